//! TODO conformance
