//! A minimal client of `/api/v2/connect`, for trying the interactive protocol by hand:
//!
//! ```sh
//! cargo run -p api --example ws -- ws://127.0.0.1:2000/api/v2/connect \
//!   '{"type":"init","language":"python","version":"3.x","files":[{"content":"print(input()[::-1])"}]}' \
//!   'hello' EOF
//! ```
//!
//! After the init message, each argument is sent as a stdin line, except `EOF` (closes stdin) and
//! `SIG:<NAME>` (sends a signal). Every server message is printed; the close code ends the run.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:2000/api/v2/connect".to_owned());
    let init = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: ws URL INIT_JSON [LINE|EOF|SIG:NAME]..."))?;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    ws.send(Message::Text(init.into())).await?;
    let mut inputs: Vec<String> = args.collect();
    inputs.reverse();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(text)))) => println!("< {text}"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                println!("< close {frame:?}");
                return Ok(());
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Ok(()),
            Err(_) => {
                let Some(input) = inputs.pop() else { continue };
                let message = if input == "EOF" {
                    json!({"type": "data", "stream": "stdin", "eof": true})
                } else if let Some(name) = input.strip_prefix("SIG:") {
                    json!({"type": "signal", "signal": name})
                } else {
                    json!({"type": "data", "stream": "stdin", "data": format!("{input}\n")})
                };
                println!("> {message}");
                ws.send(Message::Text(message.to_string().into())).await?;
            }
        }
    }
}
