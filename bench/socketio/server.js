// The benchmark peer: Robot Race's press -> scores path on Node.js Socket.IO 4 with
// @socket.io/redis-adapter, close enough to the JSON API and the WebSocket flow that the
// project's load tool (examples/load.rs --protocol socketio) drives it the same way.
//
//   node server.js --port 19080 --redis 127.0.0.1:6379 [--host 127.0.0.1]
//   (or PORT, REDIS_URL / REDIS_ADDR, HOST in the environment)
//
// Every game lives in Redis, one hash per game (`sio:game:<id>`), so any instance serves any
// game: state, winning score, version, robot order, each robot's name and score, each token.
// Changes are Lua scripts (atomic across instances); a press in `playing` is one EVALSHA
// (state check, HINCRBY of the presser's score and of the version, every score read back)
// and its scores are broadcast to the game's room through the adapter
// (io.to(room).emit -> PUBLISH; every instance PSUBSCRIBEs and delivers to its own sockets).
//
// HTTP (as the JSON API in docs/PROTOCOL.md):
//   POST /api/games {"name","winning_score"?,"countdown"?} -> 201 {game_id,robot_id,token,join_url}
//   POST /api/games/:id/players {"name"}                 -> 201 {game_id,robot_id,token}
//   GET  /api/games/:id                                   -> 200 GAME
//   GET  /health                                          -> {"status":"ok","redis":...}
// Socket.IO (default namespace "/", path /socket.io/): CONNECT with auth {game_id, token};
// the server answers "welcome" {robot_id, admin, game}; the client emits "press" and
// "start"; the server emits "scores" {version, scores} (a press during playing), "game" GAME
// (every other change), "error" {error, message}.
//
// Rules kept: join only in setup, 10 robots at most, start by the admin with 2 robots or more,
// a press in playing adds 1 to the presser's score, the first to the winning score wins
// (state finished). Left out: countdown (always 0), play again, presence, leaving, idle end,
// rate limits, the HTML pages.
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient, defineScript } = require("redis");

function arg(name, env, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i > 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  for (const e of env) if (process.env[e]) return process.env[e];
  return dflt;
}

const port = Number(arg("port", ["PORT"], "8080"));
const host = arg("host", ["HOST"], "127.0.0.1");
let redisUrl = arg("redis", ["REDIS_URL", "REDIS_ADDR"], "127.0.0.1:6379");
if (!redisUrl.includes("://")) redisUrl = `redis://${redisUrl}`;

const TTL = 24 * 3600;
const key = (id) => `sio:game:${id}`;
const room = (id) => `game:${id}`;
const newId = (n) => crypto.randomBytes(n).toString("base64url");

const scripts = {
  // KEYS[1] game; ARGV robot id, name, token. -> "ok" or an error code.
  join: defineScript({
    NUMBER_OF_KEYS: 1,
    SCRIPT: `
      local st = redis.call('HGET', KEYS[1], 'state')
      if not st then return 'not_found' end
      if st ~= 'setup' then return 'game_in_progress' end
      local order = redis.call('HGET', KEYS[1], 'order')
      local _, commas = string.gsub(order, ',', '')
      if commas + 1 >= 10 then return 'game_full' end
      redis.call('HSET', KEYS[1], 'order', order .. ',' .. ARGV[1], 'n:' .. ARGV[1], ARGV[2],
        's:' .. ARGV[1], 0, 't:' .. ARGV[3], ARGV[1])
      redis.call('HINCRBY', KEYS[1], 'ver', 1)
      redis.call('EXPIRE', KEYS[1], ${TTL})
      return 'ok'`,
    transformArguments: (k, rid, name, token) => [k, rid, name, token],
  }),
  // KEYS[1] game; ARGV robot id. -> "ok" or an error code.
  start: defineScript({
    NUMBER_OF_KEYS: 1,
    SCRIPT: `
      local v = redis.call('HMGET', KEYS[1], 'state', 'admin', 'order')
      if not v[1] then return 'not_found' end
      if v[2] ~= ARGV[1] then return 'permission_denied' end
      if v[1] ~= 'setup' then return 'invalid_state' end
      if not string.find(v[3], ',') then return 'not_enough_players' end
      redis.call('HSET', KEYS[1], 'state', 'playing')
      redis.call('HINCRBY', KEYS[1], 'ver', 1)
      return 'ok'`,
    transformArguments: (k, rid) => [k, rid],
  }),
  // KEYS[1] game; ARGV robot id. -> nil (not playing: nothing changes),
  // {version, score, score, ...} in robot order, or {0} when this press won (a full update).
  press: defineScript({
    NUMBER_OF_KEYS: 1,
    SCRIPT: `
      local v = redis.call('HMGET', KEYS[1], 'state', 'order', 'ws')
      if v[1] ~= 'playing' then return nil end
      local mine = redis.call('HINCRBY', KEYS[1], 's:' .. ARGV[1], 1)
      local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
      if mine >= tonumber(v[3]) then
        redis.call('HSET', KEYS[1], 'state', 'finished', 'winner', ARGV[1])
        return {0}
      end
      local fields = {}
      for rid in string.gmatch(v[2], '[^,]+') do fields[#fields + 1] = 's:' .. rid end
      local scores = redis.call('HMGET', KEYS[1], unpack(fields))
      local out = {ver}
      for i = 1, #scores do out[i + 1] = tonumber(scores[i]) end
      return out`,
    transformArguments: (k, rid) => [k, rid],
  }),
};

const redis = createClient({ url: redisUrl, scripts });
const pubClient = redis.duplicate();
const subClient = redis.duplicate();
let redisUp = false;
for (const c of [redis, pubClient, subClient]) {
  c.on("error", (e) => {
    redisUp = false;
    console.error(`redis: ${e.message}`);
  });
}
redis.on("ready", () => {
  redisUp = true;
});

// The GAME view (docs/PROTOCOL.md) from the game's hash.
function view(id, h) {
  const order = h.order ? h.order.split(",") : [];
  return {
    id,
    state: h.state,
    countdown: 0,
    winning_score: Number(h.ws),
    version: Number(h.ver),
    robots: order.map((rid) => ({
      id: rid,
      name: h[`n:${rid}`],
      score: Number(h[`s:${rid}`] || 0),
      admin: rid === h.admin,
      connected: true,
    })),
    leaderboard: [],
    winner: h.winner || null,
  };
}

async function loadGame(id) {
  const h = await redis.hGetAll(key(id));
  return h.state ? view(id, h) : null;
}

function validName(v) {
  if (typeof v !== "string") return null;
  const name = v.trim();
  const n = [...new Intl.Segmenter().segment(name)].length;
  // eslint-disable-next-line no-control-regex
  return n >= 1 && n <= 10 && !/[\u0000-\u001f\u007f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/.test(name)
    ? name
    : null;
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

const fail = (res, status, error, message) => send(res, status, { error, message: message || error });

function readJson(req, res, then) {
  let size = 0;
  const chunks = [];
  req.on("data", (c) => {
    size += c.length;
    if (size > 4096) {
      fail(res, 413, "too_large", "body over 4 KiB");
      req.destroy();
    } else chunks.push(c);
  });
  req.on("end", () => {
    if (size > 4096) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return fail(res, 400, "bad_request", "malformed JSON");
    }
    if (!body || typeof body !== "object") return fail(res, 400, "bad_request", "a JSON object");
    then(body).catch((e) => {
      console.error(e);
      fail(res, 503, "unavailable", String(e.message || e));
    });
  });
}

const httpServer = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const parts = url.pathname.split("/").filter(Boolean);
  if (req.method === "GET" && url.pathname === "/health") {
    return send(res, 200, { status: "ok", mode: "cluster", redis: redisUp ? "connected" : "down" });
  }
  if (parts[0] !== "api" || parts[1] !== "games") return fail(res, 404, "not_found");
  if (req.method === "POST" && parts.length === 2) {
    return readJson(req, res, async (body) => {
      const name = validName(body.name);
      if (!name) return fail(res, 422, "invalid_name");
      const ws = body.winning_score ?? 25;
      const cd = body.countdown ?? 3;
      if (!Number.isInteger(ws) || ws < 5 || ws > 1000 || !Number.isInteger(cd) || cd < 0 || cd > 10) {
        return fail(res, 422, "invalid_config");
      }
      const id = newId(6);
      const rid = newId(6);
      const token = newId(18);
      await redis
        .multi()
        .hSet(key(id), {
          state: "setup",
          ws: String(ws),
          ver: "1",
          admin: rid,
          order: rid,
          [`n:${rid}`]: name,
          [`s:${rid}`]: "0",
          [`t:${token}`]: rid,
        })
        .expire(key(id), TTL)
        .exec();
      send(res, 201, { game_id: id, robot_id: rid, token, join_url: `/join/${id}` });
    });
  }
  const id = parts[2];
  if (req.method === "POST" && parts.length === 4 && parts[3] === "players") {
    return readJson(req, res, async (body) => {
      const name = validName(body.name);
      if (!name) return fail(res, 422, "invalid_name");
      const rid = newId(6);
      const token = newId(18);
      const r = await redis.join(key(id), rid, name, token);
      if (r === "not_found") return fail(res, 404, r);
      if (r !== "ok") return fail(res, 409, r);
      const game = await loadGame(id);
      if (game) io.to(room(id)).emit("game", game);
      send(res, 201, { game_id: id, robot_id: rid, token });
    });
  }
  if (req.method === "GET" && parts.length === 3) {
    loadGame(id).then(
      (g) => (g ? send(res, 200, g) : fail(res, 404, "not_found")),
      (e) => fail(res, 503, "unavailable", String(e.message || e)),
    );
    return;
  }
  fail(res, 404, "not_found");
});

const io = new Server(httpServer, { serveClient: false });

io.use(async (socket, next) => {
  const { game_id: id, token } = socket.handshake.auth || {};
  if (typeof id !== "string" || typeof token !== "string") return next(new Error("unauthorized"));
  try {
    const rid = await redis.hGet(key(id), `t:${token}`);
    if (!rid) return next(new Error("unauthorized"));
    socket.data.game = id;
    socket.data.robot = rid;
    next();
  } catch (e) {
    next(new Error("unavailable"));
  }
});

io.on("connection", async (socket) => {
  const { game: id, robot: rid } = socket.data;
  // In the room before the game is read, so no change is missed; a change broadcast while
  // the read is under way may reach this socket before its welcome (a client drops whichever
  // of the two is older by version).
  socket.join(room(id));
  const refuse = (error) => socket.emit("error", { error, message: error });

  socket.on("press", async () => {
    let r;
    try {
      r = await redis.press(key(id), rid);
    } catch (e) {
      return refuse("unavailable");
    }
    if (!r) return; // not playing: nothing changes
    if (r[0] === 0) {
      const game = await loadGame(id);
      if (game) io.to(room(id)).emit("game", game);
      return;
    }
    io.to(room(id)).emit("scores", { version: r[0], scores: r.slice(1) });
  });

  socket.on("start", async () => {
    let r;
    try {
      r = await redis.start(key(id), rid);
    } catch (e) {
      return refuse("unavailable");
    }
    if (r !== "ok") return refuse(r);
    const game = await loadGame(id);
    if (game) io.to(room(id)).emit("game", game);
  });

  try {
    const game = await loadGame(id);
    if (!game) return socket.disconnect(true);
    const me = game.robots.find((r) => r.id === rid);
    socket.emit("welcome", { robot_id: rid, admin: !!(me && me.admin), game });
  } catch (e) {
    refuse("unavailable");
  }
});

async function main() {
  await Promise.all([redis.connect(), pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
  httpServer.listen(port, host, () => {
    console.log(`socket.io peer listening on ${host}:${port}, redis ${redisUrl}`);
  });
}

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  io.close();
  Promise.allSettled([redis.quit(), pubClient.quit(), subClient.quit()]).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

main().catch((e) => {
  console.error(`cannot start: ${e.message || e}`);
  process.exit(1);
});
