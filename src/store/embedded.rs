//! TODO embedded
