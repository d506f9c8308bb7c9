//! What the Cloud API route counts. Labels come from closed sets.

/// Handshakes, by `result` (`verified`, `refused`).
pub const HANDSHAKES: &str = "switchyard_cloud_handshake_total";
/// Signature checks of POSTs, by `key` (`current`, `previous`) or `refused`
/// reason (`missing`, `malformed`, `mismatch`). Once `key="previous"` stays
/// at zero, a secret rotation can be finished.
pub const SIGNATURES: &str = "switchyard_cloud_webhook_signature_total";
/// Batch items, by `kind` (`message`, `status`, `error`, `account`) and
/// `outcome` (`accepted`, `duplicate`, `throttled`, `unavailable`,
/// `unknown_number`, `inactive_tenant`, `waba_mismatch`, `unknown_waba`,
/// `refused`).
pub const ITEMS: &str = "switchyard_cloud_items_total";
/// Signed POSTs that are not a WhatsApp batch (`not_json`, `other_object`, `no_entries`).
pub const BATCHES_DROPPED: &str = "switchyard_cloud_batches_dropped_total";

pub fn handshake(result: &'static str) {
    metrics::counter!(HANDSHAKES, "result" => result).increment(1);
}

pub fn signature(result: &'static str) {
    metrics::counter!(SIGNATURES, "result" => result).increment(1);
}

pub fn item(kind: &'static str, outcome: &'static str) {
    metrics::counter!(ITEMS, "kind" => kind, "outcome" => outcome).increment(1);
}

pub fn batch_dropped(reason: &'static str) {
    metrics::counter!(BATCHES_DROPPED, "reason" => reason).increment(1);
}
