//! Values validated once, at the boundary. Whatever holds one of these types has already been
//! checked: nothing downstream re-validates.

use std::fmt;

use crate::ids::UserId;
use serde::{Deserialize, Serialize};

/// Why a value from outside was refused. `field` names the input field as a client spells it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The longest message body, in characters (Unicode scalar values).
pub const MESSAGE_BODY_MAX_CHARS: usize = 4_000;
pub const USERNAME_MIN_CHARS: usize = 3;
pub const USERNAME_MAX_CHARS: usize = 32;
pub const DISPLAY_NAME_MAX_CHARS: usize = 64;
pub const NAME_MAX_CHARS: usize = 100;
pub const AVATAR_URL_MAX_CHARS: usize = 2048;
pub const STATUS_TEXT_MAX_CHARS: usize = 128;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const INVITE_CODE_MIN_CHARS: usize = 6;
pub const INVITE_CODE_MAX_CHARS: usize = 32;
pub const REASON_MAX_CHARS: usize = 512;
/// A channel's topic, at most (Discord's figure: a sentence or two, not a page).
pub const TOPIC_MAX_CHARS: usize = 1_024;
/// A channel category's name, at most.
pub const CATEGORY_MAX_CHARS: usize = 100;
/// The longest emoji name between colons (`:thumbs_up:`), in characters.
pub const EMOJI_NAME_MAX_CHARS: usize = 32;
/// The most Unicode scalar values one Unicode emoji may hold: enough for the longest
/// ZWJ sequences (families, flags of subdivisions), not enough to smuggle in text.
pub const EMOJI_MAX_CODE_POINTS: usize = 16;

/// Trims `value` and checks it is non-empty, at most `max` characters, and free of control
/// characters other than those `allowed`.
fn checked_text(
    field: &'static str,
    value: &str,
    max: usize,
    allowed_controls: &[char],
) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    let chars = trimmed.chars().count();
    if chars > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters (got {chars})"),
        ));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_control() && !allowed_controls.contains(c))
    {
        return Err(ValidationError::new(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Characters that change how text around them is shown without showing themselves: the
/// bidirectional controls (overrides, embeddings, isolates, marks) and the zero-width ones. In a
/// name they can only deceive (`\u{202E}gnp.exe` shows as `exe.png`; `ali\u{200B}ce` looks like
/// `alice`), so names lose them; a body keeps them but must show something without them.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// A name as stored: without [invisible](is_invisible) characters, in Unicode normal form C
/// (so the same name typed two ways is the same text), trimmed; then checked as
/// [`checked_text`] does, so a name of nothing but invisible characters is empty.
fn checked_name(field: &'static str, value: &str, max: usize) -> Result<String, ValidationError> {
    use unicode_normalization::UnicodeNormalization;
    // Removed first: a mark left next to a letter by the removal composes with it.
    let visible: String = value
        .chars()
        .filter(|c| !is_invisible(*c))
        .collect::<String>()
        .nfc()
        .collect();
    if visible.trim().is_empty() && !value.trim().is_empty() {
        return Err(ValidationError::new(
            field,
            "must not be empty (invisible and direction-changing characters do not count)",
        ));
    }
    checked_text(field, &visible, max, &[])
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, schema($($schema:tt)*)) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(#[cfg_attr(feature = "json-schema", schemars($($schema)*))] String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_value!(
    /// A login name: 3–32 characters of `a-z`, `0-9`, `_`, `.` and `-`, stored lower-cased so
    /// that `Alice` and `alice` are the same account.
    Username,
    schema(
        length(min = USERNAME_MIN_CHARS, max = USERNAME_MAX_CHARS),
        pattern(r"^[a-z0-9_.-]+$")
    )
);
text_value!(
    /// The name shown beside a user's messages: 1–64 characters, no control characters.
    DisplayName,
    schema(length(min = 1, max = DISPLAY_NAME_MAX_CHARS))
);
text_value!(
    /// A server's name: 1–100 characters, no control characters.
    ServerName,
    schema(length(min = 1, max = NAME_MAX_CHARS))
);
text_value!(
    /// A channel's name: 1–100 characters, no control characters.
    ChannelName,
    schema(length(min = 1, max = NAME_MAX_CHARS))
);
text_value!(
    /// Where a user's picture is: an `http` or `https` URL of at most 2048 characters, with a
    /// host, no spaces and no control characters.
    AvatarUrl,
    schema(length(min = 1, max = AVATAR_URL_MAX_CHARS))
);
text_value!(
    /// What a user says about themselves now ("on holiday"): 1–128 characters, no control
    /// characters.
    StatusText,
    schema(length(min = 1, max = STATUS_TEXT_MAX_CHARS))
);
text_value!(
    /// A group conversation's name: 1–100 characters, no control characters.
    ConversationName,
    schema(length(min = 1, max = NAME_MAX_CHARS))
);
text_value!(
    /// What a channel is about, shown under its name: 1–1,024 characters; line feeds are kept,
    /// every other control character is refused. No topic is `None`, not an empty topic.
    ChannelTopic,
    schema(length(min = 1, max = TOPIC_MAX_CHARS))
);
text_value!(
    /// The heading a channel is listed under in its server: 1–100 characters, no control
    /// characters. Channels with the same category name share the heading.
    ChannelCategory,
    schema(length(min = 1, max = CATEGORY_MAX_CHARS))
);
text_value!(
    /// A message body: 1–4,000 characters after trimming; line feeds and tabs are kept, every
    /// other control character is refused.
    MessageBody,
    schema(length(min = 1, max = MESSAGE_BODY_MAX_CHARS))
);
text_value!(
    /// An invite code: 6–32 ASCII letters and digits.
    InviteCode,
    schema(
        length(min = INVITE_CODE_MIN_CHARS, max = INVITE_CODE_MAX_CHARS),
        pattern(r"^[A-Za-z0-9]+$")
    )
);

text_value!(
    /// Why a moderator removed or banned someone, kept in the log for auditors: 1–512
    /// characters; line feeds and tabs are kept, every other control character is refused.
    ModerationReason,
    schema(length(min = 1, max = REASON_MAX_CHARS))
);

text_value!(
    /// A reaction's emoji: a Unicode emoji (1–16 code points, no letters, digits only in a
    /// keycap such as `1️⃣`, no spaces or controls) or a custom emoji's name between colons
    /// (`:party_parrot:`: 1–32 of `a-z`, `0-9`, `_`, `+` and `-`, lower-cased).
    Emoji,
    schema(length(min = 1, max = 64))
);

impl Username {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let value = value.trim().to_lowercase();
        let chars = value.chars().count();
        if !(USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&chars) {
            return Err(ValidationError::new(
                "username",
                format!("must be {USERNAME_MIN_CHARS} to {USERNAME_MAX_CHARS} characters"),
            ));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
        {
            return Err(ValidationError::new(
                "username",
                "may contain only letters a-z, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(value))
    }
}

impl DisplayName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_name("displayName", value, DISPLAY_NAME_MAX_CHARS).map(Self)
    }
}

impl ServerName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_name("name", value, NAME_MAX_CHARS).map(Self)
    }
}

impl ChannelName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_name("name", value, NAME_MAX_CHARS).map(Self)
    }
}

impl AvatarUrl {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let value = value.trim();
        if value.chars().count() > AVATAR_URL_MAX_CHARS {
            return Err(ValidationError::new(
                "avatarUrl",
                format!("must be at most {AVATAR_URL_MAX_CHARS} characters"),
            ));
        }
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"))
            .ok_or_else(|| ValidationError::new("avatarUrl", "must be an http or https URL"))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') || host.contains('@') {
            return Err(ValidationError::new(
                "avatarUrl",
                "must name a host (and no user or password)",
            ));
        }
        if value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        {
            return Err(ValidationError::new(
                "avatarUrl",
                "must not contain spaces, control or invisible characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

impl StatusText {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_name("statusText", value, STATUS_TEXT_MAX_CHARS).map(Self)
    }
}

impl ConversationName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_name("name", value, NAME_MAX_CHARS).map(Self)
    }
}

impl Emoji {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(ValidationError::new("emoji", "must not be empty"));
        }
        if let Some(name) = value
            .strip_prefix(':')
            .and_then(|rest| rest.strip_suffix(':'))
        {
            let name = name.to_lowercase();
            let chars = name.chars().count();
            if !(1..=EMOJI_NAME_MAX_CHARS).contains(&chars)
                || !name.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '+' | '-')
                })
            {
                return Err(ValidationError::new(
                    "emoji",
                    format!(
                        "a custom emoji is :name: with 1 to {EMOJI_NAME_MAX_CHARS} of a-z, 0-9, \
                         '_', '+' and '-'"
                    ),
                ));
            }
            return Ok(Self(format!(":{name}:")));
        }
        let code_points = value.chars().count();
        // A keycap (`1️⃣`, `#️⃣`) is the only emoji that holds ASCII; everything else in a
        // Unicode emoji is outside ASCII, and none of it is a letter, a space or a control.
        let keycap = value.ends_with('\u{20E3}');
        let fits = code_points <= EMOJI_MAX_CODE_POINTS
            && !value.is_ascii()
            && value.chars().all(|c| {
                if c.is_ascii() {
                    keycap && matches!(c, '0'..='9' | '#' | '*')
                } else {
                    !c.is_alphabetic()
                        && !c.is_whitespace()
                        && !c.is_control()
                        && (c == '\u{200D}' || !is_invisible(c))
                }
            });
        if !fits {
            return Err(ValidationError::new(
                "emoji",
                format!(
                    "must be one Unicode emoji (at most {EMOJI_MAX_CODE_POINTS} code points) or \
                     a custom emoji's :name:"
                ),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

impl MessageBody {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let body = checked_text("body", value, MESSAGE_BODY_MAX_CHARS, &['\n', '\t'])?;
        if body.chars().all(|c| is_invisible(c) || c.is_whitespace()) {
            return Err(ValidationError::new(
                "body",
                "must not be empty (invisible and direction-changing characters do not count)",
            ));
        }
        Ok(Self(body))
    }

    /// Whether the body says `@everyone` as a word of its own.
    pub fn says_everyone(&self) -> bool {
        self.says("@everyone")
    }

    /// Whether the body says `@here` as a word of its own.
    pub fn says_here(&self) -> bool {
        self.says("@here")
    }

    /// Whether `word` stands in the body on its own: not inside another word or address
    /// (`me@everyone.example`, `@hereafter` do not count).
    fn says(&self, word: &str) -> bool {
        let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '@' || c == '.';
        self.0.match_indices(word).any(|(start, _)| {
            let before = self.0[..start].chars().next_back();
            let after = self.0[start + word.len()..].chars().next();
            !before.is_some_and(is_word)
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '@')
        })
    }

    /// The users the body mentions, each once, in order of first mention. A mention is a user
    /// id in `<@…>`, the form clients insert when a member is picked from a list; a name is
    /// not a mention, because names change and ids do not.
    pub fn mentions(&self) -> Vec<UserId> {
        let mut found = Vec::new();
        for (start, _) in self.0.match_indices("<@") {
            let rest = &self.0[start + 2..];
            let Some(end) = rest.find('>') else {
                break;
            };
            if let Ok(user) = UserId::parse(&rest[..end]) {
                if !found.contains(&user) {
                    found.push(user);
                }
            }
        }
        found
    }
}

impl ChannelTopic {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_text("topic", value, TOPIC_MAX_CHARS, &['\n']).map(Self)
    }
}

impl ChannelCategory {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_name("category", value, CATEGORY_MAX_CHARS).map(Self)
    }
}

impl ModerationReason {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        checked_text("reason", value, REASON_MAX_CHARS, &['\n', '\t']).map(Self)
    }
}

impl InviteCode {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let value = value.trim();
        let chars = value.chars().count();
        if !(INVITE_CODE_MIN_CHARS..=INVITE_CODE_MAX_CHARS).contains(&chars)
            || !value.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(ValidationError::new(
                "inviteCode",
                format!(
                    "must be {INVITE_CODE_MIN_CHARS} to {INVITE_CODE_MAX_CHARS} letters and digits"
                ),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// A password as typed. Never serialized, never logged: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let chars = value.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
            return Err(ValidationError::new(
                "password",
                format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_lose_what_cannot_be_seen() {
        // Composed and decomposed é are one name.
        assert_eq!(
            DisplayName::parse("Ame\u{301}lie").map(DisplayName::into_inner),
            Ok("Amélie".to_owned())
        );
        // Zero-width and direction-changing characters are removed.
        assert_eq!(
            DisplayName::parse("ali\u{200B}ce").map(DisplayName::into_inner),
            Ok("alice".to_owned())
        );
        assert_eq!(
            ServerName::parse("\u{202E}gnp.exe\u{202C}").map(ServerName::into_inner),
            Ok("gnp.exe".to_owned())
        );
        // Nothing visible left: refused, by field.
        for invisible in ["\u{200B}\u{200D}", "\u{202E} \u{FEFF}", "\u{2066}\u{2069}"] {
            assert_eq!(
                DisplayName::parse(invisible).map_err(|e| e.field),
                Err("displayName")
            );
            assert_eq!(
                ChannelName::parse(invisible).map_err(|e| e.field),
                Err("name")
            );
            assert_eq!(
                MessageBody::parse(invisible).map_err(|e| e.field),
                Err("body")
            );
        }
        // A body keeps them around visible text.
        assert!(MessageBody::parse("a\u{200D}b").is_ok());
    }

    #[test]
    fn everyone_and_here_count_only_as_words_of_their_own() {
        let says = |text: &str| {
            let body = MessageBody::parse(text).unwrap();
            (body.says_everyone(), body.says_here())
        };
        assert_eq!(says("@everyone look"), (true, false));
        assert_eq!(says("standup now, @here!"), (false, true));
        assert_eq!(says("(@everyone) and @here."), (true, true));
        assert_eq!(says("mail me@everyone.example"), (false, false));
        assert_eq!(says("@hereafter @everyones"), (false, false));
        assert_eq!(says("@@here x@everyone"), (false, false));
        assert_eq!(says("no mention"), (false, false));
    }

    #[test]
    fn mentions_are_user_ids_in_angle_brackets_each_once() {
        let (a, b) = (UserId::new(), UserId::new());
        let body = MessageBody::parse(&format!(
            "<@{a}> and <@{b}>, again <@{a}>; not <@someone> nor @{b} nor <@{a}"
        ))
        .unwrap();
        assert_eq!(body.mentions(), vec![a, b]);
        assert!(MessageBody::parse("<@>").unwrap().mentions().is_empty());
    }

    #[test]
    fn message_body_keeps_line_breaks_and_refuses_other_controls() {
        assert_eq!(
            MessageBody::parse("  hello\nworld\t! ").map(MessageBody::into_inner),
            Ok("hello\nworld\t!".to_owned())
        );
        assert!(MessageBody::parse("bell\u{7}").is_err());
        assert!(MessageBody::parse("  \n ").is_err());
    }

    #[test]
    fn message_body_counts_characters_not_bytes() {
        let at_limit = "é".repeat(MESSAGE_BODY_MAX_CHARS);
        assert!(MessageBody::parse(&at_limit).is_ok());
        let over = "é".repeat(MESSAGE_BODY_MAX_CHARS + 1);
        let err = MessageBody::parse(&over).unwrap_err();
        assert_eq!(err.field, "body");
        assert!(err.reason.contains("4000"), "{err}");
    }

    #[test]
    fn usernames_are_case_insensitive_and_restricted() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("alice smith").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
    }

    #[test]
    fn emoji_are_unicode_emoji_or_names_between_colons() {
        for emoji in [
            "👍",
            "❤️",
            "👨\u{200D}👩\u{200D}👧",
            "🇫🇷",
            "1\u{FE0F}\u{20E3}",
        ] {
            assert_eq!(
                Emoji::parse(emoji).map(Emoji::into_inner),
                Ok(emoji.to_owned())
            );
        }
        assert_eq!(
            Emoji::parse(" :Party_Parrot: ").map(Emoji::into_inner),
            Ok(":party_parrot:".to_owned())
        );
        for refused in [
            "",
            "   ",
            "a",
            "ok",
            "1",
            "👍 👍",
            "é",
            "::",
            ":a b:",
            ":x",
            "\u{200B}",
            "👍\u{7}",
            &"👍".repeat(EMOJI_MAX_CODE_POINTS + 1),
            &format!(":{}:", "a".repeat(EMOJI_NAME_MAX_CHARS + 1)),
        ] {
            assert_eq!(
                Emoji::parse(refused).map_err(|e| e.field),
                Err("emoji"),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn password_debug_never_shows_the_secret() {
        let password = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
