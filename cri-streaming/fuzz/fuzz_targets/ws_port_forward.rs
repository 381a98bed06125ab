//! Feeds arbitrary bytes to the WebSocket channel framing (binary and
//! base64, as port forwarding and exec read client messages) and to the
//! port-forward URL's query parsing. Nothing may panic; a decoded message
//! re-encodes to one that decodes the same.

#![no_main]

use cri_streaming::port_forward::ports_from_query;
use cri_streaming::websocket::{decode, encode, WsProtocol};
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::Message;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    if let Ok(ports) = ports_from_query(&text) {
        assert!(ports.iter().all(|p| *p > 0));
    }
    for protocol in WsProtocol::ALL {
        let messages = [
            Message::Binary(data.to_vec().into()),
            Message::Text(text.clone().into()),
        ];
        for message in messages {
            if let Some((channel, payload)) = decode(protocol, message) {
                let again = decode(protocol, encode(protocol, channel, &payload));
                assert_eq!(again, Some((channel, payload)));
            }
        }
    }
});
