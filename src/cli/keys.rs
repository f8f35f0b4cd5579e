//! `tokenledger keys`: the access-token signing keys, and rotating them.

use chrono::{DateTime, Utc};

use super::KeysCommand;
use crate::app::tokens_of;
use crate::config::Config;
use crate::signing_keys;
use crate::store::ledger::Upgrading;
use crate::store::{self, Actor, StoreKeys};
use crate::tokens::keys::{ROTATION_SLACK_SECONDS, RotationReason};

pub async fn run(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let rotating = matches!(command, KeysCommand::Rotate);
    let opened = store::open(
        &config.server.database_url,
        true,
        &StoreKeys::of(&config)?,
        Upgrading::Leave,
    )
    .await?;
    let tokens = tokens_of(&config)?;
    let listed = async {
        signing_keys::load(opened.events.as_ref(), &tokens).await?;
        if rotating {
            let now = Utc::now().timestamp();
            let made = signing_keys::rotate(
                opened.events.as_ref(),
                &tokens,
                RotationReason::Manual,
                Actor::Admin,
                now,
            )
            .await?;
            say!(
                "rotated: generation {} ({:?}, kid {}) signs from now on; the key before it verifies \
                 the tokens it signed until {}",
                made.generation,
                made.alg,
                made.kid.as_deref().unwrap_or("none"),
                time(now + tokens.access_lifetime().num_seconds() + ROTATION_SLACK_SECONDS)
            );
            return Ok(());
        }
        list(&tokens, matches!(command, KeysCommand::List { secrets: true }));
        anyhow::Ok(())
    }
    .await;
    opened.events.close().await;
    listed
}

/// One line a key: generation, algorithm, kid, since, and what it does now.
fn list(tokens: &crate::tokens::Tokens, secrets: bool) {
    let keys = tokens.keys();
    let now = Utc::now().timestamp();
    let lifetime = tokens.access_lifetime().num_seconds() + ROTATION_SLACK_SECONDS;
    say!("generation\talg\tkid\tsince\tstatus");
    let next = keys
        .next
        .iter()
        .map(|key| (keys.next_generation(), key.as_ref(), None, None));
    let held = keys.held.iter().rev().map(|h| {
        (
            h.generation,
            h.key.as_ref(),
            Some(h.since),
            Some(h.retired_at),
        )
    });
    for (generation, key, since, retired) in next.chain(held) {
        let status = match retired {
            None => "published, signs after the next rotation".to_owned(),
            Some(None) => "signs".to_owned(),
            Some(Some(at)) if now < at + lifetime => {
                format!("verifies until {}", time(at + lifetime))
            }
            Some(Some(_)) => "retired".to_owned(),
        };
        say!(
            "{generation}\t{:?}\t{}\t{}\t{status}{}",
            key.alg,
            key.kid.as_deref().unwrap_or("(JWT_SECRET)"),
            since.map_or("-".to_owned(), |at| if at == 0 {
                "-".to_owned()
            } else {
                time(at)
            }),
            match (&key.secret_text, secrets) {
                (Some(secret), true) => format!("\tsecret {secret}"),
                _ => String::new(),
            }
        );
    }
}

fn time(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0).map_or_else(|| unix.to_string(), |at| at.to_rfc3339())
}
