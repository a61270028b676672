//! API tokens through the daemon: created with scopes and an expiry, refused when revoked,
//! expired or unknown (401), and short of a scope (403, naming it).

mod helpers;

use helpers::Fixture;
use petri_client::Client;
use petri_domain::token::{Scope, TokenRequest};
use petri_domain::{ErrorCode, Millis};

fn code(e: petri_client::ClientError) -> ErrorCode {
    e.code().expect("an API error")
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_scoped_expire_and_are_revoked() {
    let f = Fixture::start("").await;
    let reader = f
        .client
        .token_create(&TokenRequest {
            name: "dashboard".into(),
            scopes: vec![Scope::Read],
            expires_in: None,
            user: None,
        })
        .await
        .unwrap();
    assert!(reader.token.starts_with("petri_"));
    let as_reader = Client::new(f.base.clone(), Some(reader.token.clone()));
    assert!(as_reader.status().await.is_ok());
    assert!(as_reader.list(&Default::default()).await.is_ok());
    // Submitting needs `submit`: 403, and the message names the scope.
    let err = as_reader.submit(&[f.script("true")]).await.unwrap_err();
    let message = err.to_string();
    assert_eq!(code(err), ErrorCode::Forbidden);
    assert!(message.contains("`submit`"), "{message}");
    // Tokens are the admin's business.
    assert_eq!(
        code(as_reader.tokens().await.unwrap_err()),
        ErrorCode::Forbidden
    );
    let nothing = f.all_jobs().await;
    assert!(nothing.is_empty(), "a refused submission changes nothing");

    // A submitter runs jobs; a tracking-only token reads nothing here.
    let submitter = f
        .client
        .token_create(&TokenRequest {
            name: "laptop".into(),
            scopes: vec![],
            expires_in: Some(Millis(30 * 86_400_000)),
            user: None,
        })
        .await
        .unwrap();
    assert_eq!(submitter.info.scopes, vec![Scope::Submit]);
    assert!(submitter.info.expires_at_ms.is_some());
    let as_submitter = Client::new(f.base.clone(), Some(submitter.token.clone()));
    let job = as_submitter
        .submit(&[f.script("true")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        f.wait_done(&job).await.state,
        petri_domain::JobState::Succeeded
    );
    let tracking = f
        .client
        .token_create(&TokenRequest {
            name: "mlflow".into(),
            scopes: vec![Scope::Tracking],
            expires_in: None,
            user: None,
        })
        .await
        .unwrap();
    let as_tracking = Client::new(f.base.clone(), Some(tracking.token));
    assert_eq!(
        code(as_tracking.status().await.unwrap_err()),
        ErrorCode::Forbidden
    );

    // The list never shows a secret; revoking refuses the token from then on.
    let listed = f.client.tokens().await.unwrap();
    assert_eq!(listed.len(), 3);
    let shown = serde_json::to_string(&listed).unwrap();
    assert!(!shown.contains(&reader.token[6..]));
    f.client.token_revoke("dashboard").await.unwrap();
    assert_eq!(
        code(as_reader.status().await.unwrap_err()),
        ErrorCode::Unauthorized
    );
    assert_eq!(
        code(f.client.token_revoke("no-such-token").await.unwrap_err()),
        ErrorCode::TokenNotFound
    );

    // Expired, unknown and missing tokens: 401.
    let short = f
        .client
        .token_create(&TokenRequest {
            name: "short".into(),
            scopes: vec![Scope::Read],
            expires_in: Some(Millis(1)),
            user: None,
        })
        .await
        .unwrap();
    helpers::wait_until("the short token to expire", || async {
        let c = Client::new(f.base.clone(), Some(short.token.clone()));
        c.status().await.is_err()
    })
    .await;
    let expired = Client::new(f.base.clone(), Some(short.token.clone()));
    let err = expired.status().await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(code(err), ErrorCode::Unauthorized);
    let unknown = Client::new(f.base.clone(), Some("petri_not-a-token".into()));
    assert_eq!(
        code(unknown.status().await.unwrap_err()),
        ErrorCode::Unauthorized
    );
    let none = Client::new(f.base.clone(), None);
    assert_eq!(
        code(none.status().await.unwrap_err()),
        ErrorCode::Unauthorized
    );

    // Bad requests change nothing.
    for bad in ["", "has space", &"x".repeat(65)] {
        let err = f
            .client
            .token_create(&TokenRequest {
                name: bad.into(),
                scopes: vec![],
                expires_in: None,
                user: None,
            })
            .await
            .unwrap_err();
        assert_eq!(code(err), ErrorCode::InvalidSpec);
    }
    let dup = f
        .client
        .token_create(&TokenRequest {
            name: "laptop".into(),
            scopes: vec![],
            expires_in: None,
            user: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code(dup), ErrorCode::TokenNameTaken);
    assert_eq!(f.client.tokens().await.unwrap().len(), 4);
}
