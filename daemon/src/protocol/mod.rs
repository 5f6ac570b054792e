//! Serial protocol decoders: pure and synchronous (bytes in, events out, any chunking), bounded,
//! resynchronising after garbage, counting what they skip and lose. [`eknet`] is the project's
//! own framing (`daemon/PROTOCOL.md`); [`cyton`] is the OpenBCI Cyton board's packet format.

pub mod crc;
pub mod cyton;
pub mod eknet;
