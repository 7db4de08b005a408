//! The JSON API as a test calls it: create, join and read games, with the status code and
//! the body of every answer.

use serde_json::{json, Value};

/// The JSON API.
pub struct Api {
    pub base: String,
    pub client: awc::Client,
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub game_id: String,
    pub robot_id: String,
    pub token: String,
}

impl Api {
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let mut res = self
            .client
            .post(format!("{}{path}", self.base))
            .send_json(&body)
            .await
            .expect("request");
        status_and_json(&mut res).await
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let mut res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        status_and_json(&mut res).await
    }

    pub async fn create(&self, name: &str, winning_score: u32, countdown: u32) -> Joined {
        let (status, body) = self
            .post_json(
                "/api/games",
                json!({"name": name, "winning_score": winning_score, "countdown": countdown}),
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        joined(&body)
    }

    pub async fn join(&self, game_id: &str, name: &str) -> Joined {
        let (status, body) = self
            .post_json(
                &format!("/api/games/{game_id}/players"),
                json!({"name": name}),
            )
            .await;
        assert_eq!(status, 201, "join {game_id} as {name}: {body}");
        joined(&body)
    }

    pub async fn game(&self, game_id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/games/{game_id}")).await;
        assert_eq!(status, 200, "get game: {body}");
        body
    }
}

/// The status and JSON body of a response (`null` when the body is not JSON).
async fn status_and_json<S>(res: &mut awc::ClientResponse<S>) -> (u16, Value)
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = res
        .json::<Value>()
        .limit(1 << 20)
        .await
        .unwrap_or(Value::Null);
    (res.status().as_u16(), body)
}

fn joined(body: &Value) -> Joined {
    Joined {
        game_id: body["game_id"].as_str().unwrap().to_owned(),
        robot_id: body["robot_id"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}
