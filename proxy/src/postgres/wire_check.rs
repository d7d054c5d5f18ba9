//! Structural checks of client messages before pgwire decodes them.
//!
//! pgwire's decoders trust the lengths and counts inside a message body and can read
//! past its end (the fuzzer found a 7-byte Bind that panics). So a whole message is
//! first walked here with a bounds-checked cursor; only a well-formed one reaches
//! pgwire. Pure functions over a byte slice: check, then parse.

use crate::error::{Error, Result};

struct Cursor<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn bad(&self, detail: &str) -> Error {
        Error::Protocol(format!("malformed {} message: {detail}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or_else(|| self.bad("shorter than its contents"))?;
        self.rest = tail;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
    }

    fn i32(&mut self) -> Result<i32> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| self.bad("short integer"))?;
        Ok(i32::from_be_bytes(b))
    }

    fn count(&mut self) -> Result<usize> {
        usize::try_from(self.i16()?).map_err(|_| self.bad("negative count"))
    }

    fn cstring(&mut self) -> Result<()> {
        let end = self.rest.iter().position(|b| *b == 0).ok_or_else(|| self.bad("unterminated string"))?;
        let s = self.take(end)?;
        std::str::from_utf8(s).map_err(|_| self.bad("string is not UTF-8"))?;
        self.take(1)?;
        Ok(())
    }

    fn end(&self) -> Result<()> {
        if self.rest.is_empty() { Ok(()) } else { Err(self.bad("trailing bytes after its contents")) }
    }
}

/// Check the body of a typed (post-startup) client message.
pub fn check_message(tag: u8, body: &[u8]) -> Result<()> {
    let name = match tag {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'D' => "Describe",
        b'C' => "Close",
        b'E' => "Execute",
        b'p' => "password",
        b'd' => return Ok(()), // CopyData: any bytes
        b'c' | b'S' | b'H' | b'X' => "empty",
        b'f' => "CopyFail",
        // Unknown types are refused by pgwire itself, without reading the body.
        _ => return Ok(()),
    };
    let mut c = Cursor { rest: body, what: name };
    match tag {
        b'Q' | b'f' => c.cstring()?,
        b'p' => {
            // Cleartext password (the token) is a C string; SASL messages are not used.
            c.cstring()?;
        }
        b'P' => {
            c.cstring()?;
            c.cstring()?;
            let n = c.count()?;
            c.take(n.checked_mul(4).ok_or_else(|| c.bad("too many parameter types"))?)?;
        }
        b'B' => {
            c.cstring()?;
            c.cstring()?;
            let formats = c.count()?;
            c.take(formats.checked_mul(2).ok_or_else(|| c.bad("too many formats"))?)?;
            for _ in 0..c.count()? {
                let len = c.i32()?;
                if len >= 0 {
                    c.take(usize::try_from(len).map_err(|_| c.bad("bad parameter length"))?)?;
                } else if len != -1 {
                    return Err(c.bad("negative parameter length other than -1"));
                }
            }
            let results = c.count()?;
            c.take(results.checked_mul(2).ok_or_else(|| c.bad("too many result formats"))?)?;
        }
        b'D' | b'C' => {
            let kind = c.take(1)?;
            if kind != b"S" && kind != b"P" {
                return Err(c.bad("target is neither S nor P"));
            }
            c.cstring()?;
        }
        b'E' => {
            c.cstring()?;
            c.i32()?;
        }
        _ => {}
    }
    c.end()
}

/// Check a whole untyped startup-phase packet (length included): SSLRequest,
/// GSSENCRequest, CancelRequest or StartupMessage.
pub fn check_startup(packet: &[u8]) -> Result<()> {
    let mut c = Cursor { rest: packet, what: "startup" };
    c.i32()?;
    let code = c.i32()?;
    match code {
        80_877_103 | 80_877_104 => c.end(),
        80_877_102 => {
            c.what = "CancelRequest";
            c.i32()?;
            // Protocol 3.2 allows a longer key; at least 4 bytes.
            if c.rest.len() < 4 {
                return Err(c.bad("secret key too short"));
            }
            Ok(())
        }
        _ => loop {
            match c.rest.first() {
                Some(0) => {
                    c.take(1)?;
                    return c.end();
                }
                Some(_) => {
                    c.cstring()?;
                    c.cstring()?;
                }
                None => return Err(c.bad("parameter list not terminated")),
            }
        },
    }
}
