//! Stateless menus. An option id carries its kind and resource
//! (`sel:<uuid>`), at most 256 characters; titles at most 20 characters. Ids
//! that come back are looked up only among the *current* tenant's options, so
//! an id forged from another tenant's menu matches nothing. WA Bridges has no
//! native buttons, so a menu renders as numbered text and a numeric answer
//! maps to the option the conversation was last shown.

use serde::Deserialize;

pub const MAX_OPTION_ID_CHARS: usize = 256;
pub const MAX_OPTION_TITLE_CHARS: usize = 20;
pub const OPTION_ID_PREFIX: &str = "sel:";

/// One menu option as configured for a tenant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MenuOption {
    pub id: String,
    pub title: String,
    pub reply: String,
}

/// A tenant's menu.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Menu {
    #[serde(default)]
    pub title: String,
    pub options: Vec<MenuOption>,
}

/// Why a configured menu is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MenuError {
    #[error("option id {0:?} must start with \"sel:\" and be 5..=256 characters")]
    BadId(String),
    #[error("option title {0:?} is longer than 20 characters")]
    TitleTooLong(String),
    #[error("option id {0:?} appears twice")]
    DuplicateId(String),
}

impl Menu {
    /// Checks every option against the limits.
    pub fn validate(&self) -> Result<(), MenuError> {
        let mut seen = std::collections::HashSet::new();
        for option in &self.options {
            let len = option.id.chars().count();
            if !option.id.starts_with(OPTION_ID_PREFIX) || !(5..=MAX_OPTION_ID_CHARS).contains(&len)
            {
                return Err(MenuError::BadId(option.id.clone()));
            }
            if option.title.chars().count() > MAX_OPTION_TITLE_CHARS {
                return Err(MenuError::TitleTooLong(option.title.clone()));
            }
            if !seen.insert(option.id.as_str()) {
                return Err(MenuError::DuplicateId(option.id.clone()));
            }
        }
        Ok(())
    }

    /// The numbered-text rendering.
    pub fn render(&self) -> String {
        let mut text = self.title.clone();
        for (i, option) in self.options.iter().enumerate() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("{}. {}", i + 1, option.title));
        }
        text
    }

    /// The option an answer selects, looked up only within this (the current
    /// tenant's) menu: a number refers to `last_shown`, an id must be one of ours.
    pub fn select(&self, answer: &str, last_shown: &[String]) -> Selection<'_> {
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
        match self.options.iter().find(|o| o.id == id) {
            Some(option) => Selection::Chosen(option),
            None => Selection::Foreign,
        }
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
        assert_eq!(
            menu().select("1", &shown),
            Selection::Chosen(&menu().options[1])
        );
    }

    #[test]
    fn an_id_from_another_tenants_menu_is_refused() {
        assert_eq!(menu().select("sel:from-tenant-b", &[]), Selection::Foreign);
    }

    #[test]
    fn a_number_without_a_shown_menu_is_not_an_option() {
        assert_eq!(
            menu().select("3", &["sel:aaa".to_owned()]),
            Selection::NotAnOption
        );
        assert_eq!(menu().select("hello", &[]), Selection::NotAnOption);
    }

    #[test]
    fn long_titles_and_bad_ids_are_rejected() {
        let mut m = menu();
        m.options[0].title = "x".repeat(21);
        assert!(matches!(m.validate(), Err(MenuError::TitleTooLong(_))));
        let mut m = menu();
        m.options[0].id = format!("sel:{}", "x".repeat(300));
        assert!(matches!(m.validate(), Err(MenuError::BadId(_))));
        let mut m = menu();
        m.options[1].id = "sel:aaa".into();
        assert!(matches!(m.validate(), Err(MenuError::DuplicateId(_))));
    }

    #[test]
    fn menus_render_as_numbered_text() {
        assert_eq!(menu().render(), "Pick one\n1. Hours\n2. Prices");
    }
}
