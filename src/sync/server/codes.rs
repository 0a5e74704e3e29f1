//! The close codes of the device protocol (docs/sync-protocol.md, "Close
//! codes"): the QUIC application error code of the connection close, and
//! the `code` of the `SyncGoodbye` sent just before it.

/// Why the server ends a device session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// Normal close (the device ended its stream).
    Done = 0,
    /// The credential was missing, malformed, forged or expired at Hello,
    /// or it was an admin token.
    Unauthenticated = 1,
    /// A frame that does not decode, an unknown or empty message, a frame
    /// out of order, or a second stream.
    Protocol = 2,
    /// A length prefix above `max_frame_bytes`.
    FrameTooLarge = 3,
    /// The credential expired during the session.
    CredentialsExpired = 4,
    /// The node, or this identity, is at its connection limit.
    TooManyConnections = 5,
    /// The identity was deleted or merged into another.
    IdentityGone = 6,
    /// No Hello within `hello_timeout`.
    HelloTimeout = 7,
    /// The node is stopping.
    ShuttingDown = 8,
    /// `DeviceHello.version` is not one this server speaks.
    UnsupportedVersion = 9,
    /// A fault of the server's.
    Internal = 10,
}

impl CloseCode {
    /// The code on the wire.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code by its number, if it is one.
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => CloseCode::Done,
            1 => CloseCode::Unauthenticated,
            2 => CloseCode::Protocol,
            3 => CloseCode::FrameTooLarge,
            4 => CloseCode::CredentialsExpired,
            5 => CloseCode::TooManyConnections,
            6 => CloseCode::IdentityGone,
            7 => CloseCode::HelloTimeout,
            8 => CloseCode::ShuttingDown,
            9 => CloseCode::UnsupportedVersion,
            10 => CloseCode::Internal,
            _ => return None,
        })
    }

    /// The name the protocol document gives it.
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::Done => "DONE",
            CloseCode::Unauthenticated => "UNAUTHENTICATED",
            CloseCode::Protocol => "PROTOCOL",
            CloseCode::FrameTooLarge => "FRAME_TOO_LARGE",
            CloseCode::CredentialsExpired => "CREDENTIALS_EXPIRED",
            CloseCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            CloseCode::IdentityGone => "IDENTITY_GONE",
            CloseCode::HelloTimeout => "HELLO_TIMEOUT",
            CloseCode::ShuttingDown => "SHUTTING_DOWN",
            CloseCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            CloseCode::Internal => "INTERNAL",
        }
    }

    /// The QUIC application error code.
    pub fn var_int(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self.as_u32())
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_document() {
        for n in 0..=10u64 {
            let c = CloseCode::from_u64(n).unwrap();
            assert_eq!(u64::from(c.as_u32()), n);
        }
        assert_eq!(CloseCode::from_u64(11), None);
        assert_eq!(CloseCode::TooManyConnections.as_u32(), 5);
        assert_eq!(CloseCode::HelloTimeout.name(), "HELLO_TIMEOUT");
    }
}
