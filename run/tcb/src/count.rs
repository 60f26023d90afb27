//! Counts one source file: lines holding compiled code, and its `mod` lines.
//!
//! A line counts when it holds at least one token of code that the bare
//! build compiles. Blank lines and comment-only lines (`//`, `///`, `//!`,
//! `/* */`) hold no token; inside a string over several lines (assembly),
//! blank lines and lines starting a comment (`//`, `/*`, `*`, `#`) do not
//! count either. An item (a module, function, `impl`, `use`,
//! statement, field or variant) under an outer attribute `#[cfg(P)]` with
//! `P` false for the build is skipped from its first attribute to its end,
//! found by matching brackets over tokens, so braces in strings, characters
//! and comments do not confuse it. An inner `#![cfg(P)]` with `P` false at
//! the top of a file leaves the whole file out.

use crate::cfg::Build;
use crate::lex::{tokenize, Kind, Token};
use std::collections::BTreeSet;

/// A `mod name;` declaration that the build compiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleDecl {
    /// The module's name.
    pub name: String,
    /// The inline modules (`mod a { ... }`) the declaration sits in.
    pub inline_path: Vec<String>,
    /// The `#[path = "..."]` attribute on it, if any.
    pub path: Option<String>,
}

/// What counting one file found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileCount {
    /// The 1-based numbers of the lines that count.
    pub lines: BTreeSet<usize>,
    /// The compiled `mod name;` declarations, whose files count too.
    pub modules: Vec<ModuleDecl>,
}

/// Counts `text` as compiled for `build`.
pub fn count_file(text: &str, build: &Build) -> FileCount {
    let tokens = tokenize(text);
    let mut result = FileCount::default();
    let mut skipped = vec![false; tokens.len()];
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_path: Option<(usize, String)> = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.is_punct('#') && punct_at(&tokens, i + 1, '!') && punct_at(&tokens, i + 2, '[') {
            let close = matching(&tokens, i + 2);
            if depth == 0
                && cfg_value(tokens.get(i + 3..close).unwrap_or(&[]), build) == Some(false)
            {
                return FileCount::default();
            }
            i = close + 1;
            continue;
        }
        if token.is_punct('#') && punct_at(&tokens, i + 1, '[') {
            let (item, enabled, path) = attribute_group(&tokens, i, build);
            if !enabled {
                let end = item_end(&tokens, item);
                skipped[i..=end].fill(true);
                i = end + 1;
                continue;
            }
            if let Some(path) = path {
                pending_path = Some((after_visibility(&tokens, item), path));
            }
            i = item;
            continue;
        }
        if token.is_ident("mod") {
            if let Some(Kind::Ident(name)) = tokens.get(i + 1).map(|t| &t.kind) {
                let path = match pending_path.take() {
                    Some((at, path)) if at == i => Some(path),
                    _ => None,
                };
                if punct_at(&tokens, i + 2, ';') {
                    result.modules.push(ModuleDecl {
                        name: name.clone(),
                        inline_path: inline.iter().map(|(n, _)| n.clone()).collect(),
                        path,
                    });
                } else if punct_at(&tokens, i + 2, '{') {
                    inline.push((name.clone(), depth));
                }
            }
        } else if token.is_punct('{') {
            depth += 1;
        } else if token.is_punct('}') {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|&(_, open)| open == depth) {
                inline.pop();
            }
        }
        i += 1;
    }
    for (token, _) in tokens.iter().zip(&skipped).filter(|(_, &s)| !s) {
        result.lines.insert(token.first_line);
        result.lines.insert(token.last_line);
        if let Kind::Str(text) = &token.kind {
            // Inside a string over several lines (assembly in
            // `global_asm!`), blank lines and comment lines do not count.
            let inner = text.split('\n').enumerate().skip(1);
            let code = inner.filter(|(_, line)| {
                let line = line.trim();
                !line.is_empty() && !["//", "/*", "*", "#"].iter().any(|c| line.starts_with(c))
            });
            result.lines.extend(code.map(|(n, _)| token.first_line + n));
        }
    }
    result
}

fn punct_at(tokens: &[Token], at: usize, c: char) -> bool {
    tokens.get(at).is_some_and(|t| t.is_punct(c))
}

/// The index of the bracket closing the one at `open` (or the last token).
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len() - 1
}

/// The value of `cfg(P)` if `inside` (an attribute's tokens) is one.
fn cfg_value(inside: &[Token], build: &Build) -> Option<bool> {
    if inside.first()?.is_ident("cfg") && inside.get(1)?.is_punct('(') {
        let close = matching(inside, 1);
        return Some(build.eval(inside.get(2..close).unwrap_or(&[])));
    }
    None
}

/// Reads the outer attributes starting at `start`: where the item after them
/// starts, whether every `cfg` among them holds, and a `path` attribute.
fn attribute_group(tokens: &[Token], start: usize, build: &Build) -> (usize, bool, Option<String>) {
    let mut at = start;
    let mut enabled = true;
    let mut path = None;
    while punct_at(tokens, at, '#') && punct_at(tokens, at + 1, '[') {
        let close = matching(tokens, at + 1);
        let inside = tokens.get(at + 2..close).unwrap_or(&[]);
        if cfg_value(inside, build) == Some(false) {
            enabled = false;
        }
        if let [name, equals, value] = inside {
            if let (true, true, Kind::Str(value)) =
                (name.is_ident("path"), equals.is_punct('='), &value.kind)
            {
                path = Some(value.clone());
            }
        }
        at = close + 1;
    }
    (at, enabled, path)
}

/// Skips `pub`, `pub(crate)`, `pub(in path)` at `at`.
fn after_visibility(tokens: &[Token], at: usize) -> usize {
    if !tokens.get(at).is_some_and(|t| t.is_ident("pub")) {
        return at;
    }
    if punct_at(tokens, at + 1, '(') {
        return matching(tokens, at + 1) + 1;
    }
    at + 1
}

/// The index of the last token of the item starting at `start`: its `;`, the
/// `}` closing its body, the `,` after a field, variant or match arm, or the
/// token before the bracket closing what the item sits in.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let head = after_visibility(tokens, start);
    let word = |k: usize| match tokens.get(k).map(|t| &t.kind) {
        Some(Kind::Ident(w)) => w.as_str(),
        _ => "",
    };
    // Bindings end at their `;` even when a block sits in their value.
    let semicolon_only = match word(head) {
        "let" | "use" | "type" => true,
        "const" | "static" => !matches!(word(head + 1), "fn" | "unsafe" | "async" | "extern"),
        _ => false,
    };
    let mut depth = 0usize;
    let mut angle = 0usize;
    for k in start..tokens.len() {
        match tokens[k].kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(c @ (')' | ']' | '}')) => {
                if depth == 0 {
                    return k.saturating_sub(1).max(start);
                }
                depth -= 1;
                if c == '}' && depth == 0 && !semicolon_only {
                    return if punct_at(tokens, k + 1, ';') {
                        k + 1
                    } else {
                        k
                    };
                }
            }
            Kind::Punct(';') if depth == 0 => return k,
            Kind::Punct(',') if depth == 0 && angle == 0 => return k,
            Kind::Punct('<') if depth == 0 => angle += 1,
            Kind::Punct('>') if depth == 0 => {
                // `->` and `=>` are not closing a generic list.
                let arrow = k > 0 && (tokens[k - 1].is_punct('-') || tokens[k - 1].is_punct('='));
                if !arrow {
                    angle = angle.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
    tokens.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<usize> {
        count_file(text, &Build::default())
            .lines
            .into_iter()
            .collect()
    }

    #[test]
    fn blank_and_comment_lines_do_not_count() {
        assert_eq!(
            lines("//! doc\n\nfn a() {}\n/// b\n/*\n{\n*/\nfn b() {} // c\n"),
            vec![3, 8]
        );
    }

    #[test]
    fn code_after_a_test_module_counts() {
        let text = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn t() { \"}\"; }\n}\nfn b() {}\n";
        assert_eq!(lines(text), vec![1, 6]);
    }

    #[test]
    fn attributes_before_the_cfg_go_with_the_item() {
        assert_eq!(
            lines("#[derive(Debug)]\n#[cfg(test)]\nstruct S;\nfn a() {}\n"),
            vec![4]
        );
    }

    #[test]
    fn fields_variants_and_generics() {
        let text = "struct S {\n    a: u8,\n    #[cfg(test)]\n    b: u8,\n}\nenum E {\n    A,\n    #[cfg(test)]\n    B\n}\n#[cfg(test)]\nfn f<A, B>() -> Result<A, B> {\n}\nfn g() {}\n";
        assert_eq!(lines(text), vec![1, 2, 5, 6, 7, 10, 14]);
    }

    #[test]
    fn bindings_end_at_their_semicolon() {
        let text = "fn f() {\n    #[cfg(test)]\n    let x = if a { 1 } else { 2 };\n    g();\n}\n";
        assert_eq!(lines(text), vec![1, 4, 5]);
    }

    #[test]
    fn assembly_lines_count_without_blanks_and_comments() {
        let text = "global_asm!(\n    r#\"\n    mov eax, 1\n\n    // why\n    /* why */\n    ret\n\"#\n);\n";
        assert_eq!(lines(text), vec![1, 2, 3, 7, 8, 9]);
    }

    #[test]
    fn cut_off_text_does_not_panic() {
        let text = "#![cfg(test)]\n#[cfg(test)]\nmod a { fn f() -> Vec<u8> { \"{\" } }\n#[path = \"x.rs\"] pub(crate) mod b;\n";
        for end in (0..=text.len()).filter(|&e| text.is_char_boundary(e)) {
            let _ = count_file(&text[..end], &Build::default());
        }
        assert!(count_file(&text[..text.len() - 1], &Build::default())
            .lines
            .is_empty());
    }

    #[test]
    fn a_false_inner_cfg_leaves_the_file_out() {
        assert!(
            count_file("//! x\n#![cfg(test)]\nfn a() {}\n", &Build::default())
                .lines
                .is_empty()
        );
    }

    #[test]
    fn module_declarations_are_found_with_their_path() {
        let text = "mod a;\n#[cfg(test)]\nmod tests;\n#[path = \"x/y.rs\"]\npub(crate) mod b;\nmod c {\n    mod d;\n}\nmod e;\n";
        let modules = count_file(text, &Build::default()).modules;
        let found: Vec<_> = modules
            .iter()
            .map(|m| (m.name.as_str(), m.inline_path.join("/"), m.path.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("a", String::new(), None),
                ("b", String::new(), Some("x/y.rs")),
                ("d", "c".to_string(), None),
                ("e", String::new(), None),
            ]
        );
    }
}
