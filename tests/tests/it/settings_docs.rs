//! `docs/configuration.md` lists every setting: this test keeps it so.
//!
//! The settings the code reads are found in the workspace's Rust sources: every
//! crate's `src/` except the test-support crate (`tests/`), without comments and
//! without `#[cfg(test)]` items or modules. Every string literal there that is an
//! environment variable name (`SWITCHYARD_ACK_WAIT`, `NATS_URL`: upper case, digits,
//! at least one `_`) is a setting: the services read theirs through
//! `config::Env` (`env.duration("SWITCHYARD_…", …)`, or a `const` holding the
//! name), the simulator and the load test through `clap`'s `env = "…"`, and the
//! load test hands them to the services it starts. `env!("CARGO_…")` is
//! compile-time and not a setting.
//!
//! The documented settings are the backticked names in the first column of
//! every table in `docs/configuration.md`, one full name per row.
//!
//! Self-contained on purpose (only `std`): no test support, no services.
//! [`settings_read_in`] is also what `deploy_manifests` checks the compose
//! file and the Kubernetes manifests against.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Upper-case string literals in the sources that are not settings. Add one
/// here, with the reason, only if it truly is not read from the environment.
const NOT_SETTINGS: &[&str] = &[
    // Meta's Cloud API vocabulary, served by the Cloud simulator
    // (bridge-sim/src/cloud): a phone number's `platform_type`, a messaging
    // tier, template and account-update events.
    "CLOUD_API",
    "TIER_250",
    "IN_APPEAL",
    "PENDING_DELETION",
    "LIMIT_EXCEEDED",
    "PARTNER_APP_UNINSTALLED",
    "PARTNER_REMOVED",
];

#[test]
fn the_configuration_page_lists_exactly_the_settings_the_code_reads() {
    let root = workspace_root();
    let read = settings_read_by_the_code(&root);
    let page = root.join("docs/configuration.md");
    let text =
        fs::read_to_string(&page).unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
    let documented = documented_settings(&text).unwrap_or_else(|bad| {
        panic!(
            "docs/configuration.md: a table row must name full variables in backticks, one per row; not variable names: {bad:?}"
        )
    });

    let missing: Vec<_> = read.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&read).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/configuration.md and the code disagree.\n\
         read by the code but not in a table of docs/configuration.md: {missing:?}\n\
         in docs/configuration.md but read nowhere in the code: {extra:?}\n\
         (the code's settings: upper-case string literals in */src outside #[cfg(test)]; \
         a literal that is not a setting goes in NOT_SETTINGS in tests/tests/settings_docs.rs)"
    );
    // A scan that found nothing would agree with an empty page: make sure both sides are real.
    for known in ["SWITCHYARD_ACK_WAIT", "NATS_URL", "WABRIDGES_SIM_ECHO"] {
        assert!(read.contains(known), "the scan missed {known}: {read:?}");
    }
}

#[test]
fn the_scan_sees_reads_in_any_shape_and_skips_comments_and_tests() {
    let source = r####"
        //! Module docs mention "SWITCHYARD_IN_A_DOC_COMMENT".
        use std::time::Duration;
        const NAME: &str = "SWITCHYARD_FROM_A_CONST";
        /* a block comment "SWITCHYARD_IN_A_BLOCK" /* nested "SWITCHYARD_NESTED" */ */
        fn read(env: &Env) -> Result<Settings, ConfigError> {
            let braces = ['{', '"', '}'];
            let json = r#"{"json": "SWITCHYARD_INSIDE_A_LONGER_LITERAL"}"#;
            let raw = r##"SWITCHYARD_RAW"##;
            Ok(Settings {
                a: env.bounded(
                    "SWITCHYARD_OVER_LINES",
                    4,
                    1..=1000,
                )?,
                b: env.string(NAME, ""),
                version: env!("CARGO_PKG_VERSION"),
                escaped: "say \"SWITCHYARD_ESCAPED\" // not a comment",
            })
        }
        #[derive(clap::Parser)]
        struct Args<'a> {
            #[arg(long, env = "SIM_FLAG_FROM_CLAP")]
            flag: &'a str,
        }
        #[cfg(test)]
        mod tests {
            fn f() { let _ = ("{", "SWITCHYARD_ONLY_IN_TESTS"); }
        }
        #[cfg(test)]
        mod more_tests;
        fn after() -> &'static str { "SWITCHYARD_AFTER_THE_TESTS" }
    "####;
    let scan = scan_source(source);
    let found: BTreeSet<&str> = scan.literals.iter().map(String::as_str).collect();
    assert_eq!(
        found,
        BTreeSet::from([
            "SWITCHYARD_FROM_A_CONST",
            "SWITCHYARD_RAW",
            "SWITCHYARD_OVER_LINES",
            "SIM_FLAG_FROM_CLAP",
            "SWITCHYARD_AFTER_THE_TESTS",
        ])
    );
    assert_eq!(scan.test_modules, vec!["more_tests".to_owned()]);
}

#[test]
fn the_page_reading_takes_first_columns_and_refuses_abbreviations() {
    let page = "\
| variable | default | meaning |
|---|---|---|
| `SWITCHYARD_A` | `1` | uses `SWITCHYARD_NOT_THIS_ONE` |
| `SWITCHYARD_B` / `NATS_URL` | `x` | two per row still count |

`SWITCHYARD_IN_PROSE` is not in a table.
";
    assert_eq!(
        documented_settings(page).unwrap(),
        BTreeSet::from([
            "NATS_URL".to_owned(),
            "SWITCHYARD_A".to_owned(),
            "SWITCHYARD_B".to_owned()
        ])
    );
    let abbreviated = "| `SWITCHYARD_SEND_RETRY_MIN_DELAY` / `_MAX_DELAY` | `2s` | |\n";
    assert_eq!(
        documented_settings(abbreviated).unwrap_err(),
        vec!["_MAX_DELAY".to_owned()]
    );
}

pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent", manifest.display()))
        .to_owned()
}

/// The settings read in every workspace member's `src/` but the test support's.
fn settings_read_by_the_code(root: &Path) -> BTreeSet<String> {
    let members: Vec<String> = workspace_members(root)
        .into_iter()
        .filter(|m| m != "tests")
        .collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    settings_read_in(root, &members)
}

/// The settings read in the `src/` of the given workspace members (directory
/// names, e.g. `["shared", "router"]`), outside comments and tests.
pub(crate) fn settings_read_in(root: &Path, members: &[&str]) -> BTreeSet<String> {
    let mut files = Vec::new();
    for member in members {
        rust_files(&root.join(member).join("src"), &mut files);
    }
    assert!(
        !files.is_empty(),
        "no Rust sources found for {members:?} under {}",
        root.display()
    );
    let scans: Vec<(PathBuf, Scan)> = files
        .into_iter()
        .map(|file| {
            let source = fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let scan = scan_source(&source);
            (file, scan)
        })
        .collect();
    // `#[cfg(test)] mod m;` in `dir/x.rs` is `dir/x/m.rs` (or `dir/x/m/mod.rs`, and
    // anything below `dir/x/m/`); in `mod.rs`, `lib.rs` or `main.rs` it sits next to it.
    let mut test_files = BTreeSet::new();
    let mut test_dirs = BTreeSet::new();
    for (file, scan) in &scans {
        let dir = file.parent().unwrap_or(root);
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let base = if matches!(stem, "mod" | "lib" | "main") {
            dir.to_owned()
        } else {
            dir.join(stem)
        };
        for module in &scan.test_modules {
            test_files.insert(base.join(format!("{module}.rs")));
            test_dirs.insert(base.join(module));
        }
    }
    scans
        .into_iter()
        .filter(|(file, _)| {
            !test_files.contains(file) && !test_dirs.iter().any(|d| file.starts_with(d))
        })
        .flat_map(|(_, scan)| scan.literals)
        .filter(|name| !NOT_SETTINGS.contains(&name.as_str()))
        .collect()
}

/// The `members = [...]` of the root `Cargo.toml`.
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("cannot read the root Cargo.toml: {e}"));
    let after = manifest
        .split_once("members")
        .and_then(|(_, rest)| rest.split_once('['))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("no `members = [...]` in the root Cargo.toml"));
    after
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Looks like an environment variable: `A_B`, upper case and digits.
fn is_variable_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && s.contains('_')
        && !s.ends_with('_')
}

/// The names documented in the tables' first columns, or the backticked
/// first-column words that are not full variable names.
fn documented_settings(page: &str) -> Result<BTreeSet<String>, Vec<String>> {
    let mut names = BTreeSet::new();
    let mut bad = Vec::new();
    for line in page.lines().map(str::trim) {
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if first == "variable" || first.starts_with("---") {
            continue;
        }
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            if is_variable_name(part) {
                names.insert(part.to_owned());
            } else {
                bad.push(part.to_owned());
            }
        }
    }
    if bad.is_empty() { Ok(names) } else { Err(bad) }
}

/// What one source file holds outside comments and `#[cfg(test)]` items.
#[derive(Debug, Default)]
struct Scan {
    /// String literals that look like variable names (not `env!`'s argument).
    literals: Vec<String>,
    /// Modules declared `#[cfg(test)] mod name;` (their files are tests).
    test_modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Punct(char),
}

fn scan_source(source: &str) -> Scan {
    let tokens = tokenize(source);
    let mut scan = Scan::default();
    let mut i = 0;
    while i < tokens.len() {
        if is_cfg_test(&tokens[i..]) {
            i = skip_item(&tokens, i + 7, &mut scan.test_modules);
            continue;
        }
        if let Token::Str(s) = &tokens[i] {
            let compile_time = i >= 3
                && tokens[i - 1] == Token::Punct('(')
                && tokens[i - 2] == Token::Punct('!')
                && matches!(&tokens[i - 3], Token::Word(w) if w == "env" || w == "option_env");
            if is_variable_name(s) && !compile_time {
                scan.literals.push(s.clone());
            }
        }
        i += 1;
    }
    scan
}

/// `#[cfg(test)]`
fn is_cfg_test(tokens: &[Token]) -> bool {
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x == w);
    tokens.len() >= 7
        && tokens[0] == Token::Punct('#')
        && tokens[1] == Token::Punct('[')
        && word(&tokens[2], "cfg")
        && tokens[3] == Token::Punct('(')
        && word(&tokens[4], "test")
        && tokens[5] == Token::Punct(')')
        && tokens[6] == Token::Punct(']')
}

/// Skips the item starting at `start` (up to its `;` or its closing brace);
/// returns the index after it. A `mod name;` is recorded as a test module.
fn skip_item(tokens: &[Token], start: usize, test_modules: &mut Vec<String>) -> usize {
    let mut i = start;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Punct(';') => {
                if i >= 2
                    && let (Token::Word(m), Token::Word(name)) = (&tokens[i - 2], &tokens[i - 1])
                    && m == "mod"
                {
                    test_modules.push(name.clone());
                }
                return i + 1;
            }
            Token::Punct('{') => {
                let mut depth = 0usize;
                while i < tokens.len() {
                    match tokens[i] {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') => {
                            depth -= 1;
                            if depth == 0 {
                                return i + 1;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                return i;
            }
            _ => i += 1,
        }
    }
    i
}

/// Words, string literals (their raw text between the quotes) and single
/// punctuation characters; comments, whitespace and char literals dropped.
fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == Some('/') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if at(i) == Some('/') && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if at(i) == Some('*') && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            let (text, next) = quoted(&chars, i + 1);
            tokens.push(Token::Str(text));
            i = next;
        } else if c == '\'' {
            // A char literal ('x', '\n', '{') or a lifetime ('a, 'static).
            if at(i + 1) == Some('\\') {
                i += 2;
                while at(i).is_some_and(|c| c != '\'') {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == Some('\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw_prefix = word == "r" || word == "br" || word == "cr";
            if raw_prefix && matches!(at(i), Some('#' | '"')) {
                let mut hashes = 0;
                while at(i) == Some('#') {
                    hashes += 1;
                    i += 1;
                }
                i += 1; // the opening quote
                let body = i;
                loop {
                    match at(i) {
                        None => break,
                        Some('"') if (1..=hashes).all(|h| at(i + h) == Some('#')) => break,
                        Some(_) => i += 1,
                    }
                }
                tokens.push(Token::Str(chars[body..i].iter().collect()));
                i = (i + 1 + hashes).min(chars.len());
            } else if (word == "b" || word == "c") && at(i) == Some('"') {
                let (text, next) = quoted(&chars, i + 1);
                tokens.push(Token::Str(text));
                i = next;
            } else {
                tokens.push(Token::Word(word));
            }
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// The text of a `"…"` literal whose body starts at `start`, and the index
/// after its closing quote.
fn quoted(chars: &[char], start: usize) -> (String, usize) {
    let mut i = start;
    while i < chars.len() && chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    let end = i.min(chars.len());
    (chars[start..end].iter().collect(), (i + 1).min(chars.len()))
}
