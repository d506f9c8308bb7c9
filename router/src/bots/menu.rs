//! Showing a tenant's menu and reading answers to it. WA Bridges has no
//! native buttons, so a menu renders as numbered text and a numeric answer
//! maps to the option the conversation was last shown. Ids that come back are
//! looked up only among the *current* tenant's options, so an id forged from
//! another tenant's menu matches nothing. The menu's configuration and its
//! limits live in `switchyard_shared::bot_config::menu`.

use switchyard_shared::{
    bot_config::{Menu, MenuOption, menu::OPTION_ID_PREFIX},
    replies::{ReplyMenu, ReplyOption},
};

/// The numbered-text rendering.
pub fn render(menu: &Menu) -> String {
    numbered(&menu.title, menu.options.iter().map(|o| o.title.as_str()))
}

/// A title and numbered option titles, one per line: a menu as a WA Bridges
/// number shows it (and every channel's fallback).
pub fn numbered<'a>(title: &str, titles: impl Iterator<Item = &'a str>) -> String {
    let mut text = title.to_owned();
    for (i, option) in titles.enumerate() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{}. {option}", i + 1));
    }
    text
}

/// The tenant's configured menu as shown in a reply (ids and titles).
pub fn shown(menu: &Menu) -> ReplyMenu {
    ReplyMenu {
        title: menu.title.clone(),
        options: menu
            .options
            .iter()
            .map(|o| ReplyOption {
                id: o.id.clone(),
                title: o.title.clone(),
            })
            .collect(),
    }
}

/// The option an answer selects, looked up only within this (the current
/// tenant's) menu: a number refers to `last_shown`, an id must be one of ours.
pub fn select<'m>(menu: &'m Menu, answer: &str, last_shown: &[String]) -> Selection<'m> {
    let answer = answer.trim();
    let id = if let Ok(n) = answer.parse::<usize>() {
        match n.checked_sub(1).and_then(|i| last_shown.get(i)) {
            Some(id) => id.as_str(),
            None => return Selection::NotAnOption,
        }
    } else if answer.starts_with(OPTION_ID_PREFIX) {
        answer
    } else {
        return Selection::NotAnOption;
    };
    match menu.options.iter().find(|o| o.id == id) {
        Some(option) => Selection::Chosen(option),
        None => Selection::Foreign,
    }
}

/// The result of matching an answer against a menu.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection<'a> {
    Chosen(&'a MenuOption),
    /// Looks like an option id but is not one of this tenant's: refused.
    Foreign,
    /// Not a menu answer at all.
    NotAnOption,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Menu {
        Menu {
            title: "Pick one".into(),
            options: vec![
                MenuOption {
                    id: "sel:aaa".into(),
                    title: "Hours".into(),
                    reply: "9-5".into(),
                },
                MenuOption {
                    id: "sel:bbb".into(),
                    title: "Prices".into(),
                    reply: "cheap".into(),
                },
            ],
        }
    }

    #[test]
    fn a_number_maps_to_the_option_last_shown() {
        let shown = vec!["sel:bbb".to_owned(), "sel:aaa".to_owned()];
        let m = menu();
        assert_eq!(select(&m, "1", &shown), Selection::Chosen(&m.options[1]));
    }

    #[test]
    fn an_id_from_another_tenants_menu_is_refused() {
        assert_eq!(
            select(&menu(), "sel:from-tenant-b", &[]),
            Selection::Foreign
        );
    }

    #[test]
    fn a_number_without_a_shown_menu_is_not_an_option() {
        assert_eq!(
            select(&menu(), "3", &["sel:aaa".to_owned()]),
            Selection::NotAnOption
        );
        assert_eq!(select(&menu(), "hello", &[]), Selection::NotAnOption);
    }

    #[test]
    fn menus_render_as_numbered_text() {
        assert_eq!(render(&menu()), "Pick one\n1. Hours\n2. Prices");
    }
}
