//! A shown menu as the Cloud API's native interactive message
//! (docs/cloud-api.md section 4): up to 3 options as reply buttons, 4 to 10
//! as a list. Option ids are never cut (a tap must come back as the exact
//! id the numbered text stood for): a menu whose ids break the limits (256
//! for a button, 200 for a list row), or with more than 10 options, or whose
//! titles collide once cut, is not made interactive and goes out as its
//! numbered text instead. Titles are cut on a character boundary with `…`.

use serde_json::{Value, json};

use crate::replies::ReplyMenu;

const MAX_BUTTONS: usize = 3;
const MAX_ROWS: usize = 10;
const BUTTON_ID_MAX: usize = 256;
const BUTTON_TITLE_MAX: usize = 20;
const ROW_ID_MAX: usize = 200;
const ROW_TITLE_MAX: usize = 24;
const BODY_MAX: usize = 1024;
const SECTION_TITLE_MAX: usize = 24;
/// What the body says when the menu has no title (Meta requires one).
const NO_TITLE: &str = "Please choose:";

/// `text` cut to `max` characters (Unicode scalar values), the last one `…`.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The `interactive` object for `menu`, or `None` when it cannot be one.
pub fn interactive(menu: &ReplyMenu) -> Option<Value> {
    let n = menu.options.len();
    if n == 0 || n > MAX_ROWS {
        return None;
    }
    let body = if menu.title.trim().is_empty() {
        NO_TITLE.to_owned()
    } else {
        cut(&menu.title, BODY_MAX)
    };
    let (id_max, title_max) = if n <= MAX_BUTTONS {
        (BUTTON_ID_MAX, BUTTON_TITLE_MAX)
    } else {
        (ROW_ID_MAX, ROW_TITLE_MAX)
    };
    let mut titles = Vec::with_capacity(n);
    for option in &menu.options {
        if option.id.is_empty() || option.id.chars().count() > id_max {
            return None;
        }
        let title = cut(&option.title, title_max);
        if title.trim().is_empty() || titles.contains(&title) {
            return None;
        }
        titles.push(title);
    }
    let options = menu.options.iter().zip(&titles);
    Some(if n <= MAX_BUTTONS {
        json!({
            "type": "button",
            "body": {"text": body},
            "action": {"buttons": options
                .map(|(o, title)| json!({"type": "reply", "reply": {"id": o.id, "title": title}}))
                .collect::<Vec<_>>()},
        })
    } else {
        let section = if menu.title.trim().is_empty() {
            "Options".to_owned()
        } else {
            cut(
                menu.title.lines().next().unwrap_or("Options"),
                SECTION_TITLE_MAX,
            )
        };
        json!({
            "type": "list",
            "body": {"text": body},
            "action": {
                "button": "Options",
                "sections": [{"title": section, "rows": options
                    .map(|(o, title)| json!({"id": o.id, "title": title}))
                    .collect::<Vec<_>>()}],
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replies::ReplyOption;

    fn menu(n: usize, title_len: usize, id_len: usize) -> ReplyMenu {
        ReplyMenu {
            title: "Pick one".to_owned(),
            options: (0..n)
                .map(|i| ReplyOption {
                    id: format!("sel:{i}{}", "x".repeat(id_len.saturating_sub(5))),
                    title: format!("{i}{}", "t".repeat(title_len.saturating_sub(1))),
                })
                .collect(),
        }
    }

    #[test]
    fn up_to_three_options_are_buttons_and_more_a_list() {
        let buttons = interactive(&menu(3, 5, 10)).unwrap();
        assert_eq!(buttons["type"], "button");
        assert_eq!(buttons["action"]["buttons"].as_array().unwrap().len(), 3);
        assert_eq!(buttons["action"]["buttons"][0]["reply"]["id"], "sel:0xxxxx");
        let list = interactive(&menu(10, 5, 10)).unwrap();
        assert_eq!(list["type"], "list");
        assert_eq!(
            list["action"]["sections"][0]["rows"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
        assert!(
            interactive(&menu(11, 5, 10)).is_none(),
            "more than 10: numbered text"
        );
        assert!(interactive(&menu(0, 5, 10)).is_none());
    }

    #[test]
    fn titles_are_cut_but_ids_never() {
        let long_titles = interactive(&menu(2, 40, 10)).unwrap();
        let title = long_titles["action"]["buttons"][0]["reply"]["title"]
            .as_str()
            .unwrap();
        assert_eq!(title.chars().count(), 20);
        assert!(title.ends_with('…'));
        // A button id of 257 characters, a row id of 201: not interactive.
        assert!(interactive(&menu(2, 5, 257)).is_none());
        assert!(interactive(&menu(2, 5, 256)).is_some());
        assert!(interactive(&menu(5, 5, 201)).is_none());
        assert!(interactive(&menu(5, 5, 200)).is_some());
    }

    #[test]
    fn titles_that_collide_once_cut_fall_back_to_text() {
        let mut m = menu(2, 5, 10);
        m.options[0].title = format!("{}A", "same".repeat(6));
        m.options[1].title = format!("{}B", "same".repeat(6));
        assert!(interactive(&m).is_none());
    }
}
