//! What we know of a tenant's bridge, as one type from every place it enters:
//! the provider's answers (`state` of an instance, `status` of its session),
//! the `connected` / `disconnected` webhooks, and the tenants table's
//! `bridge_state` column. Router, sender and the CLI branch on it; none of
//! them compares strings.
//!
//! The provider documents only `running` and `connected`; any other value is
//! kept verbatim as [`BridgeState::Other`], never a panic and never a guess.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of a tenant's bridge (and the text stored for it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum BridgeState {
    /// No bridge yet (the tenants table's default).
    Unprovisioned,
    /// The provider runs the bridge; no session state reported yet.
    Running,
    /// The WhatsApp session is up: sends may go out.
    Connected,
    /// The session dropped (often a flap): sends are held, not failed.
    Disconnected,
    /// We hold a bridge id the provider no longer knows (`fleet reconcile`).
    Missing,
    /// A value nobody documented (`unpaired`, `stopped`, …), kept verbatim.
    Other(String),
}

impl BridgeState {
    /// Parses any text; unknown values become [`BridgeState::Other`].
    pub fn parse(raw: &str) -> Self {
        match raw {
            "unprovisioned" => Self::Unprovisioned,
            "running" => Self::Running,
            "connected" => Self::Connected,
            "disconnected" => Self::Disconnected,
            "missing" => Self::Missing,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Parses bytes (a NATS payload); invalid UTF-8 is kept lossily as `Other`.
    pub fn parse_bytes(raw: &[u8]) -> Self {
        Self::parse(&String::from_utf8_lossy(raw))
    }

    /// The stable text form (stored, published and shown).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unprovisioned => "unprovisioned",
            Self::Running => "running",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Missing => "missing",
            Self::Other(s) => s,
        }
    }

    /// Whether sends must wait: only a reported disconnection holds them
    /// (a bridge in any other state is tried, and a failed send says more).
    pub fn holds_sends(&self) -> bool {
        matches!(self, Self::Disconnected)
    }
}

/// How a bridge can be stuck (`fleet stuck`, the `pairing.stuck` notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckKind {
    /// Provisioned, never reported connected: nobody scanned the QR / typed the code.
    AwaitingPairing,
    /// The session dropped and has not reported back.
    Disconnected,
}

impl StuckKind {
    /// How a bridge in `state` is stuck, if it can be.
    pub fn of(state: &BridgeState) -> Option<Self> {
        match state {
            BridgeState::Disconnected => Some(Self::Disconnected),
            // `running` is what provisioning records; a value the provider did not
            // document (`unpaired`, …) is not a working session either.
            BridgeState::Running | BridgeState::Other(_) => Some(Self::AwaitingPairing),
            BridgeState::Connected | BridgeState::Unprovisioned | BridgeState::Missing => None,
        }
    }
}

impl From<String> for BridgeState {
    fn from(s: String) -> Self {
        Self::parse(&s)
    }
}

impl From<BridgeState> for String {
    fn from(s: BridgeState) -> Self {
        s.as_str().to_owned()
    }
}

impl fmt::Display for BridgeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_state_round_trips_through_its_text() {
        for state in [
            BridgeState::Unprovisioned,
            BridgeState::Running,
            BridgeState::Connected,
            BridgeState::Disconnected,
            BridgeState::Missing,
        ] {
            assert_eq!(BridgeState::parse(state.as_str()), state);
        }
    }

    #[test]
    fn an_unknown_provider_state_is_kept_verbatim() {
        let s: BridgeState = serde_json::from_str(r#""unpaired""#).unwrap();
        assert_eq!(s, BridgeState::Other("unpaired".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""unpaired""#);
        assert_eq!(
            BridgeState::parse_bytes(b"\xff"),
            BridgeState::Other("\u{fffd}".into())
        );
    }

    #[test]
    fn only_a_disconnection_holds_sends() {
        assert!(BridgeState::Disconnected.holds_sends());
        assert!(!BridgeState::Connected.holds_sends());
        assert!(!BridgeState::Other("unpaired".into()).holds_sends());
    }
}
