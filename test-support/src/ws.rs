//! A WebSocket client for `/api/v2/connect`: JSON text messages in and out.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connection");
    ws
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .expect("send");
}

/// The next message, which must be JSON text and come within `wait` (pings are skipped).
pub async fn recv(ws: &mut Ws, wait: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(wait, ws.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message, which must be a close frame within `wait`: its code and reason.
pub async fn closed(ws: &mut Ws, wait: Duration) -> (u16, String) {
    loop {
        let message = tokio::time::timeout(wait, ws.next())
            .await
            .expect("a message in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
