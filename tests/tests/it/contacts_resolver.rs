//! The sender resolver against real records (migration 0011), read the way
//! the router reads them (its `switchyard_app` role, under row-level
//! security): every variant and the legacy pass, each tenant seeing only its
//! own role for a shared phone, two customer records giving the candidates,
//! and `@lid` ids never matching a phone.

use sqlx::PgPool;
use switchyard_router::{
    bots::sender_role::{self, SenderRole},
    conversations,
};
use switchyard_shared::{
    config::{DatabaseSettings, Env},
    contacts::{self, ContactRole, NewContact, PhoneNumber, ResourceId, SenderAddress},
    db,
    events::MessageEvent,
    tenants,
};
use switchyard_tests::{fixtures, services};

const PHONE: &str = "15550001234";

fn r(raw: &str) -> ResourceId {
    ResourceId::parse(raw).unwrap()
}

fn record(role: ContactRole, phone: &str, resource: Option<&str>) -> NewContact {
    NewContact {
        role,
        phone: PhoneNumber::parse(phone).unwrap(),
        resource: resource.map(r),
        name: String::new(),
    }
}

/// A message as WA Bridges posts it, from `contact_id` with `phone`.
fn from(contact_id: &str, phone: &str) -> MessageEvent {
    serde_json::from_value(serde_json::json!({
        "message_id": "m1", "contact_id": contact_id, "phone": phone,
        "chat_id": contact_id, "body": "hi", "from_me": false, "timestamp": 1,
    }))
    .unwrap()
}

/// The router's own kind of pool: the app role, bound by row-level security.
fn app_pool(owner: &PgPool) -> PgPool {
    let settings = DatabaseSettings::from_env(&Env::from_map([(
        "DATABASE_URL",
        services::database_url(owner),
    )]))
    .unwrap();
    db::pool_with_role(&settings, db::APP_ROLE, "switchyard-test-app").unwrap()
}

async fn role_in(app: &PgPool, owner: &PgPool, tenant: &str, message: &MessageEvent) -> SenderRole {
    let row = tenants::fetch(owner, &fixtures::tenant(tenant))
        .await
        .unwrap()
        .unwrap();
    let address = SenderAddress::of(message);
    let (_, records) = conversations::read_turn(app, &row.id, &message.chat_id, address.phone())
        .await
        .unwrap();
    sender_role::role_of(&row, &address, &records)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn every_pass_gives_its_variant_in_order_and_the_legacy_list_sits_between_staff_and_customers(
    owner: PgPool,
) {
    fixtures::add_tenant(&owner, "alpha", |new| {
        new.bot_config = serde_json::json!({"staff_phones": ["+1 555 000 0005"]});
    })
    .await;
    let alpha = fixtures::tenant("alpha");
    use ContactRole::{Customer, Staff};
    contacts::add(
        &owner,
        &alpha,
        &[
            record(Staff, "15550000001", Some("p-2")),
            record(Staff, "15550000001", Some("p-1")),
            record(Staff, "15550000002", None),
            record(Customer, "15550000003", Some("o-1")),
            record(Customer, "15550000004", None),
            // Legacy staff with a customer record too: the legacy pass wins.
            record(Customer, "15550000005", Some("o-9")),
            record(Customer, "15550000006", Some("o-2")),
            record(Customer, "15550000006", Some("o-1")),
        ],
    )
    .await
    .unwrap();
    let app = app_pool(&owner);
    let of = |n: &str| from(&format!("{n}@s.whatsapp.net"), n);

    let roles = [
        role_in(&app, &owner, "alpha", &of("15550000001")).await,
        role_in(&app, &owner, "alpha", &of("15550000002")).await,
        role_in(&app, &owner, "alpha", &of("15550000005")).await,
        role_in(&app, &owner, "alpha", &of("15550000003")).await,
        role_in(&app, &owner, "alpha", &of("15550000004")).await,
        role_in(&app, &owner, "alpha", &of("15550000006")).await,
        role_in(&app, &owner, "alpha", &of("15550000007")).await,
    ];

    assert_eq!(
        roles,
        [
            SenderRole::Staff {
                resources: vec![r("p-1"), r("p-2")]
            },
            SenderRole::StaffWithoutResource,
            SenderRole::StaffWithoutResource,
            SenderRole::Customer {
                resource: Some(r("o-1"))
            },
            SenderRole::Customer { resource: None },
            SenderRole::Ambiguous {
                candidates: vec![r("o-1"), r("o-2")]
            },
            SenderRole::Unknown,
        ]
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_phone_that_is_staff_in_one_tenant_and_a_customer_in_another_gets_each_tenants_own_role(
    owner: PgPool,
) {
    for id in ["alpha", "bravo"] {
        fixtures::add_tenant(&owner, id, |_| {}).await;
    }
    contacts::add(
        &owner,
        &fixtures::tenant("alpha"),
        &[record(ContactRole::Staff, PHONE, None)],
    )
    .await
    .unwrap();
    contacts::add(
        &owner,
        &fixtures::tenant("bravo"),
        &[record(ContactRole::Customer, PHONE, Some("b-order"))],
    )
    .await
    .unwrap();
    let app = app_pool(&owner);
    let message = from("15550001234@s.whatsapp.net", "+1 555-000-1234");

    let in_alpha = role_in(&app, &owner, "alpha", &message).await;
    let in_bravo = role_in(&app, &owner, "bravo", &message).await;

    assert_eq!(in_alpha, SenderRole::StaffWithoutResource);
    assert_eq!(
        in_bravo,
        SenderRole::Customer {
            resource: Some(r("b-order"))
        }
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_lid_contact_id_never_matches_a_phone_record_or_the_legacy_list(owner: PgPool) {
    fixtures::add_tenant(&owner, "alpha", |new| {
        new.bot_config = serde_json::json!({"staff_phones": [PHONE]});
    })
    .await;
    contacts::add(
        &owner,
        &fixtures::tenant("alpha"),
        &[record(ContactRole::Customer, PHONE, Some("o-1"))],
    )
    .await
    .unwrap();
    let app = app_pool(&owner);
    // The same digits, but as a linked-identity id and without a phone field.
    let lid = from("15550001234@lid", "");

    let role = role_in(&app, &owner, "alpha", &lid).await;
    let by_phone = role_in(
        &app,
        &owner,
        "alpha",
        &from("15550001234@s.whatsapp.net", ""),
    )
    .await;

    assert!(matches!(SenderAddress::of(&lid), SenderAddress::Lid(_)));
    assert_eq!(role, SenderRole::Unknown);
    assert_eq!(
        by_phone,
        SenderRole::StaffWithoutResource,
        "the same digits as a phone JID do match"
    );
}
