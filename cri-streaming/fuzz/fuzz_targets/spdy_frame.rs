//! Feeds arbitrary bytes to the SPDY frame parser as a session would: frame
//! after frame from one buffer, header blocks through one decoder. Nothing may
//! panic, a parsed frame must re-encode to what was parsed, and `used` must
//! stay within the buffer.

#![no_main]

use cri_streaming::spdy::frame::Frame;
use cri_streaming::spdy::header_block::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut decoder = Decoder::new();
    while let Ok(Some((frame, used))) = Frame::parse(rest) {
        assert!(used <= rest.len());
        if let Frame::SynStream { headers, .. }
        | Frame::SynReply { headers, .. }
        | Frame::Headers { headers, .. } = &frame
        {
            let _ = decoder.decode(headers);
        }
        if !matches!(frame, Frame::Unknown { .. }) {
            let again = frame.encode();
            assert_eq!(
                Frame::parse(&again).ok().flatten().map(|f| f.0),
                Some(frame)
            );
        }
        rest = &rest[used..];
    }
});
