//! Which WhatsApp channel a tenant's number is on (issue 22): a WA Bridges
//! bridge or a Cloud API phone number. Everything else of the pipeline is
//! shared; the channel decides only how events come in (`/hook/…` or
//! `/cloud`) and how replies go out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A WA Bridges bridge (linked device), addressed by its `customer_ref`.
    #[default]
    Wabridges,
    /// A phone number on Meta's WhatsApp Cloud API.
    CloudApi,
}

impl Channel {
    /// The `tenants.channel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Wabridges => "wabridges",
            Channel::CloudApi => "cloud_api",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "wabridges" => Some(Channel::Wabridges),
            "cloud_api" => Some(Channel::CloudApi),
            _ => None,
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
