//! awc's TCP connector with `TCP_NODELAY` set on every socket, as browsers do.
//!
//! With Nagle's algorithm on, a press written while an earlier small write is still unacknowledged
//! waits for the server's (possibly delayed, up to 40 ms) ACK: the load tool would measure its
//! own socket options, not the server.

use std::task::{Context, Poll};

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;

#[derive(Clone, Default)]
pub struct NoDelay {
    tcp: ConnectorService,
}

impl Service<ConnectInfo<Uri>> for NoDelay {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<ConnectInfo<Uri>>::poll_ready(&self.tcp, cx)
    }

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let connecting = self.tcp.call(req);
        Box::pin(async move {
            let conn = connecting.await?;
            conn.io_ref().set_nodelay(true).map_err(ConnectError::Io)?;
            Ok(conn)
        })
    }
}
