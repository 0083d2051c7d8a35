//! Length-delimited framing of SMPP PDUs for tokio.
//!
//! The decoder never fails on protocol input: a frame with an impossible
//! command_length comes out as [`Frame::InvalidLength`] so the session can answer
//! generic_nack ESME_RINVCMDLEN before closing. The length is checked before any
//! buffer is reserved for the body, so a hostile length costs nothing.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::pdu::{Pdu, HEADER_LEN};

/// Default upper bound on command_length (room for a 64 KiB message_payload).
pub const DEFAULT_MAX_PDU_SIZE: u32 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete PDU, header included.
    Pdu(Bytes),
    /// command_length below 16 or above the maximum. `sequence_number` is known when
    /// the 16-octet header could be read (lengths above the maximum); below 16 the
    /// header cannot be trusted. The stream carries nothing usable after this.
    InvalidLength {
        command_length: u32,
        sequence_number: Option<u32>,
    },
}

#[derive(Debug)]
pub struct SmppCodec {
    max_pdu_size: u32,
    /// Set after an invalid length: framing is lost, so nothing more is decoded.
    poisoned: bool,
}

impl SmppCodec {
    pub fn new(max_pdu_size: u32) -> Self {
        SmppCodec {
            max_pdu_size: max_pdu_size.max(HEADER_LEN as u32),
            poisoned: false,
        }
    }
}

impl Default for SmppCodec {
    fn default() -> Self {
        SmppCodec::new(DEFAULT_MAX_PDU_SIZE)
    }
}

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if self.poisoned {
            src.clear();
            return Ok(None);
        }
        if src.len() < 4 {
            return Ok(None);
        }
        let command_length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if command_length < HEADER_LEN as u32 {
            self.poisoned = true;
            return Ok(Some(Frame::InvalidLength {
                command_length,
                sequence_number: None,
            }));
        }
        if command_length > self.max_pdu_size {
            if src.len() < HEADER_LEN {
                return Ok(None);
            }
            let sequence_number = u32::from_be_bytes([src[12], src[13], src[14], src[15]]);
            self.poisoned = true;
            return Ok(Some(Frame::InvalidLength {
                command_length,
                sequence_number: Some(sequence_number),
            }));
        }
        let len = command_length as usize;
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(len).freeze();
        Ok(Some(Frame::Pdu(frame)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        // A peer that closes mid-PDU just goes away; the partial bytes mean nothing.
        let frame = self.decode(src)?;
        if frame.is_none() {
            src.advance(src.len());
        }
        Ok(frame)
    }
}

impl Encoder<&Pdu> for SmppCodec {
    type Error = std::io::Error;

    fn encode(&mut self, pdu: &Pdu, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        pdu.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::pdu::Body;

    fn feed(codec: &mut SmppCodec, bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    #[test]
    fn splits_back_to_back_pdus_and_waits_for_partial_ones() {
        let a = Pdu::new(1, Body::EnquireLink).to_bytes();
        let b = Pdu::new(2, Body::Unbind).to_bytes();
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        let mut codec = SmppCodec::default();
        let mut buf = BytesMut::from(&all[..all.len() - 3]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Pdu(a)));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&all[all.len() - 3..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Pdu(b)));
    }

    #[test]
    fn lengths_0_and_15_are_invalid_without_a_sequence() {
        for len in [0u32, 15] {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[0; 12]);
            let frames = feed(&mut SmppCodec::default(), &bytes);
            assert_eq!(
                frames,
                vec![Frame::InvalidLength {
                    command_length: len,
                    sequence_number: None
                }]
            );
        }
    }

    #[test]
    fn length_16_and_max_are_accepted_max_plus_one_is_not() {
        let mut codec = SmppCodec::new(1024);
        assert_eq!(
            feed(&mut codec, &Pdu::new(1, Body::EnquireLink).to_bytes()).len(),
            1
        );

        let mut max = vec![0u8; 1024];
        max[..4].copy_from_slice(&1024u32.to_be_bytes());
        assert!(matches!(
            feed(&mut SmppCodec::new(1024), &max)[..],
            [Frame::Pdu(_)]
        ));

        let mut over = vec![0u8; 16];
        over[..4].copy_from_slice(&1025u32.to_be_bytes());
        over[12..16].copy_from_slice(&77u32.to_be_bytes());
        assert_eq!(
            feed(&mut SmppCodec::new(1024), &over),
            vec![Frame::InvalidLength {
                command_length: 1025,
                sequence_number: Some(77)
            }]
        );
    }

    #[test]
    fn a_huge_length_reserves_nothing() {
        let mut codec = SmppCodec::default();
        let mut buf = BytesMut::from(&0xFFFF_FFF0u32.to_be_bytes()[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn nothing_is_decoded_after_an_invalid_length() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&Pdu::new(1, Body::EnquireLink).to_bytes());
        assert_eq!(feed(&mut SmppCodec::default(), &bytes).len(), 1);
    }
}
