//! TODO(helper): the connection loop.
use super::{Handler, Limits};
use crate::shutdown::Shutdown;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serve `handler` on `listener` until `shutdown` fires, then stop accepting,
/// let in-flight requests finish (bounded), and return.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let _ = (listener, handler, limits);
    shutdown.wait().await;
    Ok(())
}
