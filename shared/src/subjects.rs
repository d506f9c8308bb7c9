//! Every NATS subject, stream and consumer name Switchyard uses.
//!
//! Subjects are built here and only here, and only from validated ids, so a
//! tenant token can never smuggle a `.`, `*` or `>` into a subject. Publishers
//! always use the plain per-tenant subject (`inbound.<tenant>`); the stream maps
//! it to its partition (`inbound.<p>.<tenant>`) with a subject transform.

use crate::ids::TenantId;

/// Stream of webhook events accepted by ingest (also the replayable event log).
pub const INBOUND_STREAM: &str = "INBOUND";
/// Stream of bot replies waiting to be sent.
pub const OUTBOUND_STREAM: &str = "OUTBOUND";
/// Stream of bulk replies (dead-letter replays, recovery): sent only when
/// their tenant has no live reply waiting, within a share of the fleet budget.
pub const BULK_STREAM: &str = "BULK";
/// Stream of dead letters, both directions.
pub const DLQ_STREAM: &str = "DLQ";
/// Stream of per-tenant spill lanes (a backlogged tenant's overflow).
pub const SPILL_STREAM: &str = "SPILL";
/// Stream of tenant notifications waiting to be posted to the tenant's
/// notification URL (`shared::notifications`, the sender's notifier).
pub const NOTIFY_STREAM: &str = "NOTIFY";
/// Partitions of [`NOTIFY_STREAM`], whatever `SWITCHYARD_PARTITIONS` says:
/// notifications are a trickle next to replies, and every partition is a
/// durable consumer (an R3 group on a cluster) idling at the server, so one
/// consumer read by one sender replica at a time (moving on its failure like
/// any partition) serves them; fairness between tenants comes from the
/// tenant lanes inside it, not from partitions.
pub const NOTIFY_PARTITIONS: u16 = 1;
/// KV bucket where the sender replicas share the fleet-wide send budget.
pub const BUDGET_BUCKET: &str = "switchyard_budget";
/// KV bucket where router and sender replicas publish the state they hold per
/// tenant (`switchyard status`).
pub const STATUS_BUCKET: &str = "switchyard_status";

/// Which side of the pipeline a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Webhook events, processed by the router.
    Inbound,
    /// Bot replies, delivered by the sender.
    Outbound,
    /// Bulk replies (re-runs an operator started), delivered by the sender
    /// after the tenant's live replies. Their dead letters are outbound ones.
    Bulk,
    /// Tenant notifications, posted by the sender's notifier to the tenant's
    /// own URL. Their dead letters are `dlq.notify.<tenant>`.
    Notify,
}

impl Direction {
    /// The subject prefix and name fragment of this direction.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Bulk => "bulk",
            Direction::Notify => "notify",
        }
    }

    /// The work stream of this direction.
    pub fn stream(self) -> &'static str {
        match self {
            Direction::Inbound => INBOUND_STREAM,
            Direction::Outbound => OUTBOUND_STREAM,
            Direction::Bulk => BULK_STREAM,
            Direction::Notify => NOTIFY_STREAM,
        }
    }

    /// The direction whose dead-letter subjects this direction uses: a bulk
    /// reply that fails is an outbound dead letter like any other reply.
    pub fn dead_letter_side(self) -> Self {
        match self {
            Direction::Bulk => Direction::Outbound,
            other => other,
        }
    }

    /// Parses a dead-letter or command-line direction (`inbound`,
    /// `outbound`, `notify`); `bulk` is a work lane, not a dead-letter side,
    /// and is not accepted here.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            "notify" => Some(Direction::Notify),
            _ => None,
        }
    }
}

/// `inbound.<tenant>` or `outbound.<tenant>`: where publishers put a tenant's work.
pub fn work(direction: Direction, tenant: &TenantId) -> String {
    format!("{}.{}", direction.as_str(), tenant)
}

/// `inbound.<tenant>`: where ingest publishes a tenant's webhook events.
pub fn inbound(tenant: &TenantId) -> String {
    work(Direction::Inbound, tenant)
}

/// `outbound.<tenant>`: where the router publishes a tenant's replies.
pub fn outbound(tenant: &TenantId) -> String {
    work(Direction::Outbound, tenant)
}

/// `bulk.<tenant>`: where re-runs (dead-letter replays, the router's replies
/// to recovered or replayed events) put a tenant's bulk replies.
pub fn bulk(tenant: &TenantId) -> String {
    work(Direction::Bulk, tenant)
}

/// `notify.<tenant>`: where a tenant's notifications are published.
pub fn notify(tenant: &TenantId) -> String {
    work(Direction::Notify, tenant)
}

/// `dlq.<direction>.<tenant>`: a tenant's dead letters (bulk ones are outbound).
pub fn dead_letter(direction: Direction, tenant: &TenantId) -> String {
    format!("dlq.{}.{}", direction.dead_letter_side().as_str(), tenant)
}

/// Filter for every dead letter of one direction (`dlq.inbound.*`).
pub fn dead_letter_filter(direction: Direction) -> String {
    format!("dlq.{}.*", direction.as_str())
}

/// `spill.<direction>.<tenant>`: a backlogged tenant's own durable lane.
pub fn spill(direction: Direction, tenant: &TenantId) -> String {
    format!("spill.{}.{}", direction.as_str(), tenant)
}

/// Filter for every spill lane of one direction (`spill.inbound.*`).
pub fn spill_filter(direction: Direction) -> String {
    format!("spill.{}.*", direction.as_str())
}

/// The stream's input subjects for a direction (`inbound.*`).
pub fn work_input_filter(direction: Direction) -> String {
    format!("{}.*", direction.as_str())
}

/// The subject transform destination that spreads tenants over `partitions`.
pub fn partition_transform_destination(direction: Direction, partitions: u16) -> String {
    format!(
        "{}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}",
        direction.as_str()
    )
}

/// Every stored subject of a direction, all partitions (`outbound.*.*`).
pub fn all_partitions_filter(direction: Direction) -> String {
    format!("{}.*.*", direction.as_str())
}

/// The filter of partition `p`'s consumer (`inbound.3.*`).
pub fn partition_filter(direction: Direction, partition: u16) -> String {
    format!("{}.{partition}.*", direction.as_str())
}

/// Every `(stream, subject filter)` holding one tenant's messages: its
/// partitioned work subjects in each direction, its dead letters and its
/// spill lanes (offboarding purges them).
pub fn tenant_filters(tenant: &TenantId) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = [
        Direction::Inbound,
        Direction::Outbound,
        Direction::Bulk,
        Direction::Notify,
    ]
    .into_iter()
    .map(|d| (d.stream(), format!("{}.*.{tenant}", d.as_str())))
    .collect();
    out.push((DLQ_STREAM, format!("dlq.*.{tenant}")));
    out.push((SPILL_STREAM, format!("spill.*.{tenant}")));
    out
}

/// Durable consumer name of partition `p`.
pub fn partition_consumer(direction: Direction, partition: u16) -> String {
    format!("{}-p{partition}", direction.as_str())
}

/// Durable consumer name of a tenant's spill lane (created on demand).
pub fn spill_consumer(direction: Direction, tenant: &TenantId) -> String {
    format!("spill-{}-{}", direction.as_str(), tenant)
}

/// Core-NATS subject on which a tenant's bridge state changes are announced
/// (the router hears `connected` / `disconnected`; the sender pauses or resumes).
pub fn bridge_state_changed(tenant: &TenantId) -> String {
    format!("control.bridge.{tenant}")
}

/// Filter for every bridge state announcement.
pub const BRIDGE_STATE_FILTER: &str = "control.bridge.*";

/// Core-NATS subject on which an operator lifts a tenant's sending holds
/// (after a 401/403 or a restriction was dealt with).
pub fn sending_resumed(tenant: &TenantId) -> String {
    format!("control.resume.{tenant}")
}

/// Filter for every operator resume.
pub const SENDING_RESUMED_FILTER: &str = "control.resume.*";

/// Core-NATS subject on which the router tells the senders to hold a
/// tenant's sends at once (a Cloud API account notice: the app uninstalled,
/// an account-level error); the payload is the hold's reason
/// (`unauthorized`, `restricted`). Lifted like any hold of that reason.
pub fn sending_held(tenant: &TenantId) -> String {
    format!("control.hold.{tenant}")
}

/// Filter for every hold announcement.
pub const SENDING_HELD_FILTER: &str = "control.hold.*";

/// Core-NATS subject announcing that a tenant row changed (cache invalidation).
pub fn tenant_changed(tenant: &TenantId) -> String {
    format!("control.tenant.{tenant}")
}

/// Filter for every tenant change announcement.
pub const TENANT_CHANGED_FILTER: &str = "control.tenant.*";

/// Payload of a [`tenant_changed`] announcement by the router after a Cloud
/// API quality, tier or account notice: besides re-reading the row, the
/// sender holding the tenant reads the number's health from Meta at once.
/// (An operator's announcement has an empty payload.)
pub const CLOUD_HEALTH_CHANGED: &[u8] = b"cloud_health";

/// Key of one replica's status record of a tenant in [`STATUS_BUCKET`]:
/// `<tenant>.<service>.<replica>`, so one tenant's records are listed by the
/// filter [`status_tenant_filter`]. The replica id comes from the environment:
/// every character outside `[A-Za-z0-9_-]` becomes `_` (at most 64 kept).
pub fn status_key(
    tenant: &TenantId,
    service: crate::tenant_status::StatusService,
    replica: &str,
) -> String {
    let replica: String = replica
        .chars()
        .take(64)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    let replica = if replica.is_empty() {
        "_".to_owned()
    } else {
        replica
    };
    format!("{tenant}.{}.{replica}", service.as_str())
}

/// Key filter for every status record of one tenant (`acme.>`).
pub fn status_tenant_filter(tenant: &TenantId) -> String {
    format!("{tenant}.>")
}

/// The tenant named by the last token of a stored subject, whatever its shape
/// (`inbound.acme`, `inbound.3.acme`, `spill.outbound.acme`, `dlq.inbound.acme`).
/// `None` when that token is not a valid tenant id.
pub fn tenant_of(subject: &str) -> Option<TenantId> {
    let last = subject.rsplit('.').next()?;
    TenantId::parse(last).ok()
}

/// The partition of a stored work subject (`inbound.3.acme` → 3); `None`
/// for any other shape.
pub fn partition_of(subject: &str) -> Option<u16> {
    let mut tokens = subject.split('.');
    let (_direction, partition, _tenant) = (tokens.next()?, tokens.next()?, tokens.next()?);
    if tokens.next().is_some() {
        return None;
    }
    partition.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_work_subject_names_its_partition() {
        assert_eq!(partition_of("inbound.3.acme"), Some(3));
        assert_eq!(partition_of("inbound.acme"), None);
        assert_eq!(partition_of("dlq.inbound.acme"), None);
        assert_eq!(partition_of("inbound.3.acme.x"), None);
    }

    fn t(raw: &str) -> TenantId {
        TenantId::parse(raw).unwrap()
    }

    #[test]
    fn subjects_have_the_documented_shapes() {
        let acme = t("acme");
        assert_eq!(inbound(&acme), "inbound.acme");
        assert_eq!(outbound(&acme), "outbound.acme");
        assert_eq!(dead_letter(Direction::Outbound, &acme), "dlq.outbound.acme");
        assert_eq!(bulk(&acme), "bulk.acme");
        assert_eq!(dead_letter(Direction::Bulk, &acme), "dlq.outbound.acme");
        assert_eq!(spill(Direction::Bulk, &acme), "spill.bulk.acme");
        assert_eq!(Direction::parse("bulk"), None);
        assert_eq!(spill(Direction::Inbound, &acme), "spill.inbound.acme");
        assert_eq!(partition_filter(Direction::Inbound, 7), "inbound.7.*");
        assert_eq!(
            partition_transform_destination(Direction::Inbound, 16),
            "inbound.{{partition(16,1)}}.{{wildcard(1)}}"
        );
    }

    #[test]
    fn the_tenant_is_read_back_from_any_subject_shape() {
        for s in [
            "inbound.acme",
            "inbound.3.acme",
            "spill.outbound.acme",
            "dlq.inbound.acme",
        ] {
            assert_eq!(tenant_of(s), Some(t("acme")), "{s}");
        }
        assert_eq!(tenant_of("inbound.3.*"), None);
        assert_eq!(tenant_of("inbound.3.Bad"), None);
    }

    #[test]
    fn status_keys_start_with_the_tenant_and_never_split_on_a_replica_id() {
        use crate::tenant_status::StatusService;
        let acme = t("acme");
        assert_eq!(
            status_key(&acme, StatusService::Sender, "sender-1"),
            "acme.sender.sender-1"
        );
        assert_eq!(
            status_key(&acme, StatusService::Router, "pod.a*b>"),
            "acme.router.pod_a_b_"
        );
        assert_eq!(
            status_key(&acme, StatusService::Router, ""),
            "acme.router._"
        );
        assert_eq!(status_tenant_filter(&acme), "acme.>");
    }
}
