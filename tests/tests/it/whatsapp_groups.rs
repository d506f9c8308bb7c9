//! Group chats are ignored by default; a per-tenant setting
//! (`bot_config.groups_enabled`) enables them. Whole pipeline.

use crate::whatsapp_support::{Rig, WITHIN};
use sqlx::PgPool;
use switchyard_bridge_sim::events::TextMessage;

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn group_chats_are_ignored_unless_the_tenant_enables_them(pool: PgPool) {
    let rig = Rig::start(&pool, &["quiet", "social"]).await;
    sqlx::query("UPDATE tenants SET bot_config = '{\"groups_enabled\": true}' WHERE id = 'social'")
        .execute(&pool)
        .await
        .unwrap();
    let router = rig.router(&[]).await;
    let sender = rig.sender(&[]).await;
    for tenant in ["quiet", "social"] {
        let mut message = TextMessage::new("15550009001", "hello group");
        message.group = Some("120363025246125486@g.us".to_owned());
        let delivery = rig
            .sim
            .post_webhook(tenant, message.to_json())
            .await
            .unwrap();
        assert_eq!(delivery.status, Some(200));
    }
    rig.counter_reaches(
        &router,
        "switchyard_router_dropped_total",
        "reason=\"group_chat\"",
        1.0,
    )
    .await;
    rig.sim.wait_for_sends(1, WITHIN).await.unwrap();
    assert!(
        rig.sends_for("quiet").is_empty(),
        "a group answered by default"
    );
    let social = rig.sends_for("social");
    assert_eq!(social.len(), 1);
    assert_eq!(social[0].chat, "120363025246125486@g.us");
    sender.stop().await;
    router.stop().await;
}
