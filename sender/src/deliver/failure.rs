//! A failed send on either channel: the WA Bridges client's errors or the
//! Cloud API's. The retry policy decides each by its own table
//! (`retry_policy::SendPolicy::decide` / `decide_cloud`); what the delivery
//! step needs of any failure (a metric class, whether it spends an attempt,
//! whether the message may have gone out) is answered here.

use switchyard_shared::{
    cloud_api::{CloudError, Outcome},
    wabridges::WaError,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    #[error(transparent)]
    Wa(WaError),
    #[error(transparent)]
    Cloud(CloudError),
}

impl SendFailure {
    /// The attempts counter's label.
    pub fn class(&self) -> &'static str {
        match self {
            SendFailure::Wa(e) => e.class(),
            SendFailure::Cloud(e) => e.class(),
        }
    }

    /// Whether the attempt counts towards the limit.
    pub fn spends_attempt(&self) -> bool {
        match self {
            SendFailure::Wa(e) => e.spends_attempt(),
            SendFailure::Cloud(e) => matches!(e.outcome(), Outcome::Retry { .. }),
        }
    }

    /// Whether the message may have gone out although no success came back:
    /// the ledger row is then left in doubt.
    pub fn in_doubt(&self) -> bool {
        match self {
            SendFailure::Wa(e) => matches!(
                e,
                WaError::Timeout { .. } | WaError::Transient { status: None, .. }
            ),
            SendFailure::Cloud(e) => e.may_have_sent(),
        }
    }
}
