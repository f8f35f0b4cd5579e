//! An HTTP client of tokenledger's API, at one address: the in-process app of `tests/api` and
//! the child-process `Server` both hand one out, so a test speaks to either the same way.

use serde_json::{Value, json};

use crate::PASSWORD;

/// The API at `address` (`http://127.0.0.1:<port>`), through `client`.
#[derive(Clone, Debug)]
pub struct Api {
    pub address: String,
    pub client: reqwest::Client,
}

impl Api {
    /// A client with a connection pool of its own.
    pub fn new(address: impl Into<String>) -> Api {
        Api::with_client(address, reqwest::Client::new())
    }

    pub fn with_client(address: impl Into<String>, client: reqwest::Client) -> Api {
        Api {
            address: address.into(),
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends `request` and reads the answer: its status and its body as JSON (`Null` when
    /// empty, a string when not JSON). An error only where no answer came (the server is down
    /// or was killed), which the crash test counts on.
    pub async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value), reqwest::Error> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, body))
    }

    pub async fn try_post(&self, path: &str, body: Value) -> Result<(u16, Value), reqwest::Error> {
        Api::send(self.client.post(self.url(path)).json(&body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.try_post(path, body).await.expect("request")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        Api::send(request).await.expect("request")
    }

    pub async fn post_with_bearer(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let request = self.client.post(self.url(path)).bearer_auth(token);
        Api::send(request.json(&body)).await.expect("request")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        Api::send(self.client.get(self.url(path)))
            .await
            .expect("request")
    }

    pub async fn get_with_bearer(&self, path: &str, token: &str) -> (u16, Value) {
        Api::send(self.client.get(self.url(path)).bearer_auth(token))
            .await
            .expect("request")
    }

    pub async fn delete_with_bearer(&self, path: &str, token: &str) -> (u16, Value) {
        Api::send(self.client.delete(self.url(path)).bearer_auth(token))
            .await
            .expect("request")
    }

    /// Registers `username` (`<username>@example.com`, `PASSWORD`); the whole answer.
    pub async fn register(&self, username: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/auth/local/register",
                json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "register: {body}");
        body
    }

    /// Logs in with `requestRefresh` and returns the whole answer.
    pub async fn login(&self, identifier: &str) -> Value {
        self.login_with(identifier, json!({})).await
    }

    /// Logs in with this body (password and requestRefresh added) and returns the answer.
    pub async fn login_with(&self, identifier: &str, extra: Value) -> Value {
        let mut body =
            json!({"identifier": identifier, "password": PASSWORD, "requestRefresh": true});
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        let (status, answer) = self.post("/api/auth/local", body).await;
        assert_eq!(status, 200, "login: {answer}");
        answer
    }

    /// Registers `name` and logs in with `requestRefresh`: the user's id and refresh token.
    pub async fn user_with_token(&self, name: &str) -> (i64, String) {
        let id = self.register(name).await["user"]["id"]
            .as_i64()
            .expect("user id");
        let token = self.login(name).await["refreshToken"]
            .as_str()
            .expect("a refresh token")
            .to_owned();
        (id, token)
    }

    pub async fn refresh(&self, token: &str) -> (u16, Value) {
        self.post("/api/auth/local/refresh", json!({ "refreshToken": token }))
            .await
    }

    /// `GET /metrics`, read back.
    pub async fn metrics(&self) -> crate::Samples {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "GET /metrics");
        crate::Samples::parse(&response.text().await.expect("body"))
    }
}
