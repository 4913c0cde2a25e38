//! Trace and span identifiers: fixed-size byte newtypes with hex for humans.
//!
//! Ids are checked once, where bytes arrive ([`TryFrom<&[u8]>`]); everything
//! downstream holds a valid, non-zero id.

use std::fmt;
use std::str::FromStr;

/// Why bytes or text are not a valid trace or span id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id has the wrong number of bytes.
    #[error("{kind} must be {expected} bytes, got {actual}")]
    WrongLength {
        kind: &'static str,
        expected: usize,
        actual: usize,
    },
    /// The id is all zeros, which OTLP defines as invalid.
    #[error("{kind} must not be all zeros")]
    AllZero { kind: &'static str },
    /// The text is not hexadecimal.
    #[error("{kind} is not valid hex: {reason}")]
    NotHex { kind: &'static str, reason: String },
}

macro_rules! id_type {
    ($name:ident, $len:expr, $kind:expr) => {
        #[doc = concat!("A ", $kind, ": ", stringify!($len), " bytes, never all zero.")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Number of bytes in the id.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex, as OTLP/JSON and users write it.
            pub fn to_hex(&self) -> String {
                let mut buf = [0u8; 2 * $len];
                self.write_hex(&mut buf).to_owned()
            }

            /// Lowercase hex into `buf`, without allocating.
            pub fn write_hex<'b>(&self, buf: &'b mut [u8; 2 * $len]) -> &'b str {
                // Both cannot fail: the buffer is exactly twice the id, and hex is ASCII.
                let _ = hex::encode_to_slice(self.0, buf);
                std::str::from_utf8(buf).unwrap_or_default()
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = IdError;

            fn try_from(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError::WrongLength {
                    kind: $kind,
                    expected: $len,
                    actual: bytes.len(),
                })?;
                if arr.iter().all(|b| *b == 0) {
                    return Err(IdError::AllZero { kind: $kind });
                }
                Ok(Self(arr))
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                let not_hex = |e: hex::FromHexError| IdError::NotHex {
                    kind: $kind,
                    reason: e.to_string(),
                };
                if s.len() == 2 * $len {
                    // The common case, decoded without allocating.
                    let mut arr = [0u8; $len];
                    hex::decode_to_slice(s, &mut arr).map_err(not_hex)?;
                    return Self::try_from(arr.as_slice());
                }
                let bytes = hex::decode(s).map_err(not_hex)?;
                Self::try_from(bytes.as_slice())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; 2 * $len];
                f.write_str(self.write_hex(&mut buf))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

id_type!(TraceId, 16, "trace id");
id_type!(SpanId, 8, "span id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_hex() {
        let id: TraceId = "5b8efff798038103d269b633813fc60c".parse().unwrap();
        assert_eq!(id.to_hex(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(id.as_bytes()[0], 0x5b);
    }

    #[test]
    fn rejects_wrong_length_zero_and_non_hex() {
        assert_eq!(
            SpanId::try_from(&[1u8; 7][..]),
            Err(IdError::WrongLength {
                kind: "span id",
                expected: 8,
                actual: 7
            })
        );
        assert_eq!(
            TraceId::try_from(&[0u8; 16][..]),
            Err(IdError::AllZero { kind: "trace id" })
        );
        assert!(matches!(
            "zz".parse::<SpanId>(),
            Err(IdError::NotHex { .. })
        ));
        let err = SpanId::try_from(&[][..]).unwrap_err();
        assert_eq!(err.to_string(), "span id must be 8 bytes, got 0");
    }
}
