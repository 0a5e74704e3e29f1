//! The close codes of the device protocol (docs/sync-protocol.md, "Close
//! codes"): the QUIC application error code of the connection close, and
//! the `code` of the `SyncGoodbye` sent just before it. The server sends
//! them and the client reads them, so both share this one definition.

/// Why a device session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 0: normal close (the device ended its stream).
    Done,
    /// 1: the credential was missing, malformed, forged or expired at
    /// Hello, or it was an admin token.
    Unauthenticated,
    /// 2: a frame that does not decode, an unknown or empty message, a
    /// frame out of order, or a second stream.
    Protocol,
    /// 3: a length prefix above `max_frame_bytes`.
    FrameTooLarge,
    /// 4: the credential expired during the session.
    CredentialsExpired,
    /// 5: the node, or this identity, is at its connection limit.
    TooManyConnections,
    /// 6: the identity was deleted or merged into another.
    IdentityGone,
    /// 7: no Hello within `hello_timeout`.
    HelloTimeout,
    /// 8: the node is stopping.
    ShuttingDown,
    /// 9: `DeviceHello.version` is not one the server speaks.
    UnsupportedVersion,
    /// 10: a fault of the server's.
    Internal,
    /// A code this build does not know (a newer server's); the server
    /// never sends one.
    Other(u32),
}

impl CloseCode {
    /// The code of a wire number.
    pub fn from_u32(n: u32) -> Self {
        match n {
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
            n => CloseCode::Other(n),
        }
    }

    /// The wire number.
    pub fn as_u32(self) -> u32 {
        match self {
            CloseCode::Done => 0,
            CloseCode::Unauthenticated => 1,
            CloseCode::Protocol => 2,
            CloseCode::FrameTooLarge => 3,
            CloseCode::CredentialsExpired => 4,
            CloseCode::TooManyConnections => 5,
            CloseCode::IdentityGone => 6,
            CloseCode::HelloTimeout => 7,
            CloseCode::ShuttingDown => 8,
            CloseCode::UnsupportedVersion => 9,
            CloseCode::Internal => 10,
            CloseCode::Other(n) => n,
        }
    }

    /// The name the protocol document gives it (`UNKNOWN` for
    /// [`CloseCode::Other`]).
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
            CloseCode::Other(_) => "UNKNOWN",
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
        for n in 0..=10u32 {
            let c = CloseCode::from_u32(n);
            assert_ne!(c.name(), "UNKNOWN", "{n}");
            assert_eq!(c.as_u32(), n);
        }
        assert_eq!(CloseCode::from_u32(11), CloseCode::Other(11));
        assert_eq!(CloseCode::Other(11).as_u32(), 11);
        assert_eq!(CloseCode::TooManyConnections.as_u32(), 5);
        assert_eq!(CloseCode::HelloTimeout.name(), "HELLO_TIMEOUT");
        assert_eq!(CloseCode::ShuttingDown.to_string(), "SHUTTING_DOWN (8)");
    }
}
