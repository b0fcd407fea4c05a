//! The protobuf wire format, read-only: a cursor over a buffer that yields
//! (field number, value) pairs. Every read is bounds-checked; malformed input is an
//! error, never a panic.

/// One field's value as it is on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    /// Length-delimited: strings, bytes, messages, packed repeated scalars.
    Bytes(&'a [u8]),
    Fixed32(u32),
    /// A (deprecated) group, skipped whole: no field of ours is one.
    Group,
}

impl Value<'_> {
    pub fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "fixed64",
            Value::Bytes(_) => "length-delimited",
            Value::Fixed32(_) => "fixed32",
            Value::Group => "group",
        }
    }
}

/// Groups nest; deeper than this is rejected rather than followed.
const MAX_GROUP_DEPTH: usize = 32;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at offset {}", self.pos));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(format!("varint overflows 64 bits at offset {}", self.pos - 1));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at offset {}", self.pos - 10))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let at = self.pos;
        self.take(N)?
            .try_into()
            .map_err(|_| format!("bad fixed-width value at offset {at}"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "length {n} at offset {} runs past the end of the data ({} bytes)",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| format!("length {len} is too large"))?;
        self.take(len)
    }

    /// The next field, or `None` at the end of the buffer.
    pub fn field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let (number, wire_type) = self.key()?;
        let value = match wire_type {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.fixed()?)),
            2 => Value::Bytes(self.length_delimited()?),
            3 => {
                self.skip_group(number, 0)?;
                Value::Group
            }
            4 => {
                return Err(format!(
                    "unexpected end-group for field {number} at offset {}",
                    self.pos
                ));
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.fixed()?)),
            _ => return Err(format!("invalid wire type {wire_type} for field {number}")),
        };
        Ok(Some((number, value)))
    }

    fn key(&mut self) -> Result<(u32, u8), String> {
        let at = self.pos;
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(format!("invalid field number {number} at offset {at}"));
        }
        Ok((number as u32, wire_type))
    }

    /// Skips the rest of group `number` (its start key already read).
    fn skip_group(&mut self, number: u32, depth: usize) -> Result<(), String> {
        if depth >= MAX_GROUP_DEPTH {
            return Err("groups nested too deeply".into());
        }
        loop {
            if self.pos >= self.buf.len() {
                return Err(format!("group {number} is not closed"));
            }
            let (inner, wire_type) = self.key()?;
            match wire_type {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    self.length_delimited()?;
                }
                3 => self.skip_group(inner, depth + 1)?,
                4 if inner == number => return Ok(()),
                4 => return Err(format!("end-group {inner} closes group {number}")),
                5 => {
                    self.take(4)?;
                }
                _ => return Err(format!("invalid wire type {wire_type} for field {inner}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(Reader::new(&[0x00]).varint(), Ok(0));
        assert_eq!(Reader::new(&[0x96, 0x01]).varint(), Ok(150));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&overflow).varint().is_err());
        assert!(Reader::new(&[0x80, 0x80]).varint().is_err());
        assert!(Reader::new(&[]).varint().is_err());
    }

    #[test]
    fn fields_and_errors() {
        // 1: varint 5, 2: "hi", 3: fixed32, 4: fixed64, 5: group { 1: varint 1 }
        let buf = [
            0x08, 0x05, 0x12, 0x02, b'h', b'i', 0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0, 0, 0x2b, 0x08, 0x01, 0x2c,
        ];
        let mut r = Reader::new(&buf);
        assert_eq!(r.field(), Ok(Some((1, Value::Varint(5)))));
        assert_eq!(r.field(), Ok(Some((2, Value::Bytes(b"hi")))));
        assert_eq!(r.field(), Ok(Some((3, Value::Fixed32(1)))));
        assert_eq!(r.field(), Ok(Some((4, Value::Fixed64(2)))));
        assert_eq!(r.field(), Ok(Some((5, Value::Group))));
        assert_eq!(r.field(), Ok(None));

        for bad in [
            &[0x12, 0x05, b'a'][..],               // length past the end
            &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f], // huge length
            &[0x00, 0x01],                         // field number 0
            &[0x0e, 0x01],                         // wire type 6
            &[0x0c],                               // stray end-group
            &[0x0b, 0x08, 0x01],                   // unclosed group
            &[0x0b, 0x14],                         // group closed by another number
            &[0x0d, 0x01, 0x02],                   // truncated fixed32
            &[0x09, 0x01],                         // truncated fixed64
        ] {
            let mut r = Reader::new(bad);
            assert!(r.field().is_err(), "{bad:?} must be rejected");
        }
    }
}
