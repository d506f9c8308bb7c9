use serde_json::json;

use super::*;

fn body(text: &str) -> Components {
    Components::parse(json!([{"type": "BODY", "text": text}])).unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn names_languages_and_categories_follow_metas_rules() {
    assert!(TemplateName::parse("order_update_2").is_ok());
    for bad in [
        "",
        "Order",
        "order-update",
        "order update",
        "ordér",
        &"a".repeat(513),
    ] {
        assert!(
            matches!(TemplateName::parse(bad), Err(TemplateError::Name(_))),
            "{bad:?}"
        );
    }
    assert!(TemplateName::parse(&"a".repeat(512)).is_ok());
    for good in ["en", "en_US", "pt_BR", "es_419", "fil"] {
        assert!(Language::parse(good).is_ok(), "{good}");
    }
    for bad in ["", "e", "EN", "en-US", "en_", "en_US_x", "english"] {
        assert!(Language::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Category::parse("utility").unwrap(), Category::Utility);
    assert!(matches!(
        Category::parse("PROMO"),
        Err(TemplateError::Category(_))
    ));
}

#[test]
fn statuses_keep_unknown_words_and_events_move_them_as_meta_says() {
    assert_eq!(TemplateStatus::parse("approved"), TemplateStatus::Approved);
    assert_eq!(
        TemplateStatus::parse("IN_APPEAL"),
        TemplateStatus::Other("IN_APPEAL".to_owned())
    );
    assert_eq!(TemplateStatus::parse("IN_APPEAL").as_str(), "IN_APPEAL");
    assert_eq!(
        TemplateStatus::after_event("REINSTATED"),
        Some(TemplateStatus::Approved)
    );
    assert_eq!(
        TemplateStatus::after_event("PAUSED"),
        Some(TemplateStatus::Paused)
    );
    assert_eq!(TemplateStatus::after_event("FLAGGED"), None);
    assert_eq!(TemplateStatus::after_event("LIMIT_EXCEEDED"), None);
    assert_eq!(
        TemplateStatus::parse("x\u{0}\n;DROP"),
        TemplateStatus::Other("XDROP".to_owned()),
        "only A-Z and _ are kept"
    );
}

#[test]
fn placeholders_are_positional_or_named_never_both_and_without_gaps() {
    assert_eq!(
        Placeholders::parse("no params").unwrap(),
        Placeholders::None
    );
    assert_eq!(
        Placeholders::parse("Hi {{1}}, order {{2}} ({{1}})").unwrap(),
        Placeholders::Positional(2)
    );
    assert_eq!(
        Placeholders::parse("Hi {{first_name}}, {{order_id}} {{first_name}}").unwrap(),
        Placeholders::Named(strings(&["first_name", "order_id"]))
    );
    for bad in [
        "{{1}} {{3}}",
        "{{0}}",
        "{{1}} {{name}}",
        "{{Name}}",
        "{{ 1 }}",
        "open {{1",
        "{{}}",
    ] {
        assert!(Placeholders::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn components_need_one_bounded_body_and_say_what_a_send_must_fill() {
    let c = Components::parse(json!([
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {"type": "BODY", "text": "Your order {{1}} ships {{2}}."},
        {"type": "FOOTER", "text": "Acme"},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x.example/{{1}}"}]}
    ]))
    .unwrap();
    assert_eq!(
        (c.body_params(), c.header_params(), c.button_params()),
        (2, 1, true)
    );
    assert_eq!(c.parameter_format(), "POSITIONAL");
    let media = Components::parse(json!([{"type": "header", "format": "IMAGE"},
                                         {"type": "body", "text": "Hi"}]))
    .unwrap();
    assert_eq!(media.header_params(), 1);

    let refused = |v: serde_json::Value| match Components::parse(v) {
        Err(TemplateError::Components(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(refused(json!({"type": "BODY"})).contains("array"));
    assert!(refused(json!([])).contains("BODY component is required"));
    assert!(
        refused(json!([{"type": "BODY", "text": "a"}, {"type": "BODY", "text": "b"}]))
            .contains("more than one BODY")
    );
    assert!(refused(json!([{"type": "BODY", "text": "x".repeat(1025)}])).contains("1-1024"));
    assert!(refused(json!([{"type": "BODY", "text": "   "}])).contains("1-1024"));
    assert!(refused(json!([{"type": "CAROUSEL"}])).contains("not HEADER"));
    assert!(refused(json!([{"text": "x"}])).contains("\"type\""));
    assert!(
        refused(json!([{"type": "BODY", "text": "x"}, {"type": "FOOTER", "text": "{{1}}"}]))
            .contains("FOOTER takes no placeholder")
    );
    assert!(
        refused(json!([{"type": "HEADER", "text": "{{1}} {{2}}"}, {"type": "BODY", "text": "x"}]))
            .contains("at most one placeholder")
    );
    assert!(refused(json!([{"type": "BODY", "text": "{{1}} {{3}}"}])).starts_with("BODY:"));
    let huge = json!([{"type": "BODY", "text": "x"},
                      {"type": "BUTTONS", "buttons": vec!["y".repeat(1000); 100]}]);
    assert!(refused(huge).contains("at most 65536"));
}

#[test]
fn texts_become_components_with_one_example_per_placeholder() {
    let c = Components::from_texts(
        "Hi {{1}}",
        Some("Acme"),
        Some("Reply STOP"),
        &strings(&["Ana"]),
    )
    .unwrap();
    assert_eq!(c.value()[1]["example"]["body_text"], json!([["Ana"]]));
    assert_eq!(c.value()[0]["type"], "HEADER");
    assert_eq!(c.value()[2]["type"], "FOOTER");
    let named = Components::from_texts("Hi {{name}}", None, None, &strings(&["Ana"])).unwrap();
    assert_eq!(named.parameter_format(), "NAMED");
    assert_eq!(
        named.value()[0]["example"]["body_text_named_params"][0]["param_name"],
        "name"
    );
    let missing = Components::from_texts("Hi {{1}} {{2}}", None, None, &strings(&["Ana"]));
    assert!(
        matches!(&missing, Err(TemplateError::Components(m)) if m.contains("one --example for each")),
        "{missing:?}"
    );
}

#[test]
fn parameters_are_checked_for_count_emptiness_whitespace_and_length() {
    let c = body("Order {{1}} is {{2}}");
    assert_eq!(c.check_body_params(&strings(&["A-1", "shipped"])), Ok(()));
    assert_eq!(
        c.check_body_params(&strings(&["A-1"])),
        Err(ParamError::Count {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        c.check_body_params(&strings(&["A-1", " "])),
        Err(ParamError::Empty { index: 2 })
    );
    assert_eq!(
        c.check_body_params(&strings(&["A\n1", "x"])),
        Err(ParamError::LineBreak { index: 1 })
    );
    assert_eq!(
        c.check_body_params(&strings(&["A\t1", "x"])),
        Err(ParamError::LineBreak { index: 1 })
    );
    assert_eq!(
        c.check_body_params(&strings(&["A    1", "x     y"])),
        Err(ParamError::Spaces { index: 2 }),
        "four spaces pass, five do not"
    );
    // "Order " and " is " are 10 fixed characters.
    let long = "x".repeat(1014);
    assert_eq!(
        c.check_body_params(&[long.clone(), "y".to_owned()]),
        Err(ParamError::TooLong { length: 1025 })
    );
    assert_eq!(
        c.check_body_params(&[long[1..].to_owned(), "y".to_owned()]),
        Ok(())
    );
    assert_eq!(body("Hi {{1}}").single_param_room(), 1021);
}

#[test]
fn a_reply_is_flattened_into_one_parameter() {
    assert_eq!(
        flatten_param("Line one\n\n  line\ttwo     end  ", 100),
        "Line one line two end"
    );
    assert_eq!(flatten_param("abcdef", 4), "abc…");
    assert_eq!(
        flatten_param("ab  cdef", 4),
        "ab…",
        "no space before the ellipsis"
    );
    assert_eq!(flatten_param(" \n\t", 10), "…");
    assert_eq!(flatten_param("äöü", 3), "äöü", "characters, not bytes");
    let flat = flatten_param(&"word \n".repeat(500), 1021);
    assert!(flat.chars().count() <= 1021);
    assert_eq!(body("Hi {{1}}").check_body_params(&[flat]), Ok(()));
}
