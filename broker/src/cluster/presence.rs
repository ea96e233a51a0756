//! Presence across nodes.
//!
//! Counts live in a Redis hash per destination (`{prefix}:p:{dest}`), one field per node
//! instance and user (`{instance}\x01{user}`, the user empty for anonymous sessions). Each change
//! runs one Lua script, atomically: it updates the count, computes the whole member list from
//! the fields of live instances (each instance keeps `{prefix}:alive:{instance}` fresh), and
//! appends the event, list included, to the companion destination's history stream (retaining
//! the latest). Every node's watchers follow that stream (see `crate::history`), so all see the
//! same events in the same order, and a new watcher starts from the latest one.
//!
//! An instance that dies stops refreshing its key; the nodes that watch a destination sweep
//! its fields away within seconds and announce the departure.
//!
//! Each script also renews both keys' expiry (`key_ttl_ms`, passed as the last argument), and
//! the same task keeps every stream this node reads alive: a destination's keys outlive the
//! last node that uses it by at most `key_ttl_ms`.

use std::sync::Arc;
use std::time::Duration;

use super::{Cluster, Retry};
use crate::broker::Broker;

/// How often an instance says it is alive, and how long the word holds.
pub(super) const ALIVE_EVERY: Duration = Duration::from_secs(2);
const ALIVE_FOR: Duration = Duration::from_secs(6);

/// Builds the event JSON from the hash, skipping dead instances. Shared by both scripts.
const AGGREGATE: &str = r#"
local function state(hash, prefix, kind, dest, who)
  local all = redis.call('HGETALL', hash)
  local users, anon, alive = {}, 0, {}
  for i = 1, #all, 2 do
    local f, c = all[i], tonumber(all[i + 1])
    local sep = string.find(f, '\1', 1, true)
    if sep then
      local inst, user = string.sub(f, 1, sep - 1), string.sub(f, sep + 1)
      if alive[inst] == nil then
        alive[inst] = redis.call('EXISTS', prefix .. ':alive:' .. inst) == 1
      end
      if alive[inst] and c > 0 then
        if user == '' then anon = anon + c else users[user] = (users[user] or 0) + c end
      end
    end
  end
  local names = {}
  for u, _ in pairs(users) do table.insert(names, u) end
  table.sort(names)
  local list = {}
  for _, u in ipairs(names) do
    table.insert(list, '{"user":' .. cjson.encode(u) .. ',"sessions":' .. users[u] .. '}')
  end
  local user, sessions = 'null', anon
  if who ~= nil and who ~= '' then user = cjson.encode(who); sessions = users[who] or 0 end
  return '{"type":' .. cjson.encode(kind) .. ',"destination":' .. cjson.encode(dest)
    .. ',"user":' .. user .. ',"sessions":' .. sessions .. ',"anonymous":' .. anon
    .. ',"members":[' .. table.concat(list, ',') .. ']}'
end
local function touch(ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
"#;

/// KEYS: hash, companion stream. ARGV: field, count (this instance's, absolute: a lost
/// command is repaired by the next one or by the resync), type, user, destination, prefix,
/// expiry.
const CHANGE: &str = r#"
if tonumber(ARGV[2]) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local ev = state(KEYS[1], ARGV[6], ARGV[3], ARGV[5], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1, '*', 'j', ev)
touch(ARGV[#ARGV])
return 1
"#;

/// KEYS: hash, companion stream. ARGV: prefix, destination, expiry. Removes dead instances' fields
/// and, when there were any, announces the new list.
const SWEEP: &str = r#"
local all = redis.call('HKEYS', KEYS[1])
local gone, alive = 0, {}
for _, f in ipairs(all) do
  local sep = string.find(f, '\1', 1, true)
  local inst = sep and string.sub(f, 1, sep - 1) or f
  if alive[inst] == nil then
    alive[inst] = redis.call('EXISTS', ARGV[1] .. ':alive:' .. inst) == 1
  end
  if not alive[inst] then redis.call('HDEL', KEYS[1], f); gone = gone + 1 end
end
if gone > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1, '*', 'j', state(KEYS[1], ARGV[1], 'leave', ARGV[2], nil))
end
touch(ARGV[#ARGV])
return gone
"#;

/// KEYS: hash, companion stream. ARGV: prefix, destination, instance, then field/count pairs
/// of this instance's counts, then the expiry. Makes this instance's fields exactly those; announces the list
/// when that changed anything (commands lost in flight, or fields swept while this node was
/// cut off from Redis).
const RESYNC: &str = r#"
local want = {}
for i = 4, #ARGV - 2, 2 do want[ARGV[i]] = ARGV[i + 1] end
local mine = ARGV[3] .. ''
local changed = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #mine) == mine and want[f] == nil then
    redis.call('HDEL', KEYS[1], f); changed = changed + 1
  end
end
for f, c in pairs(want) do
  if redis.call('HGET', KEYS[1], f) ~= c then
    redis.call('HSET', KEYS[1], f, c); changed = changed + 1
  end
end
if changed > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1, '*', 'j', state(KEYS[1], ARGV[1], 'update', ARGV[2], nil))
end
touch(ARGV[#ARGV])
return changed
"#;

impl Cluster {
    fn presence_hash(&self, destination: &str) -> String {
        format!("{}:p:{destination}", self.prefix)
    }

    /// `EVAL` of one of the presence scripts (with the shared aggregation), its two keys set:
    /// the destination's hash and its companion's stream. The caller adds the arguments.
    fn presence_script(&self, script: &str, destination: &str, companion: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{AGGREGATE}{script}"))
            .arg(2)
            .arg(self.presence_hash(destination))
            .arg(self.history_stream(companion));
        cmd
    }

    /// Counts a subscription in or out of `destination`'s presence, cluster-wide, and
    /// announces it on the companion destination's stream. Ordered with everything else this
    /// node sends; never waits (`false`: the backlog is full).
    pub fn presence_change(
        &self,
        destination: &str,
        companion: &str,
        user: Option<&str>,
        joined: bool,
        count: usize,
    ) -> bool {
        self.watch_presence(destination, companion);
        let field = format!("{}\u{1}{}", self.instance, user.unwrap_or(""));
        let mut cmd = self.presence_script(CHANGE, destination, companion);
        cmd.arg(field)
            .arg(count)
            .arg(if joined { "join" } else { "leave" })
            .arg(user.unwrap_or(""))
            .arg(destination)
            .arg(&self.prefix)
            .arg(self.key_ttl_ms());
        self.send(super::Outgoing::Command(cmd))
    }

    /// Remembers a presence destination this node takes part in, to sweep it.
    pub fn watch_presence(&self, destination: &str, companion: &str) {
        self.presence_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((destination.to_owned(), companion.to_owned()));
    }
}

/// Keeps this instance's alive key fresh and sweeps dead instances out of the presence of the
/// destinations this node takes part in.
pub(super) async fn liveness(broker: Arc<Broker>, cluster: Arc<Cluster>) {
    let mut retry = Retry::new(&broker, &cluster, "liveness", None);
    // Streams this node reads are renewed a few times per key_ttl_ms.
    let touch_every = cluster.key_ttl / 3;
    let mut next_touch = tokio::time::Instant::now();
    loop {
        let Some(mut shared) = retry.commands().await else {
            return;
        };
        loop {
            let mut done = tend(&broker, &cluster, &mut shared.con).await;
            if done.is_ok() && tokio::time::Instant::now() >= next_touch {
                done = touch(&cluster, &mut shared.con).await;
                next_touch = tokio::time::Instant::now() + touch_every;
            }
            if let Err(e) = done {
                if !retry.command_failed(&shared, &e).await {
                    return;
                }
                break;
            }
            retry.worked();
            tokio::select! {
                _ = broker.shutdown.cancelled() => return,
                _ = tokio::time::sleep(ALIVE_EVERY) => {}
            }
        }
    }
}

/// One round: this instance is alive; for each destination it takes part in, its counts are
/// re-asserted and dead instances' swept.
async fn tend(
    broker: &Broker,
    cluster: &Cluster,
    con: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(format!("{}:alive:{}", cluster.prefix, cluster.instance))
        .arg(1)
        .arg("PX")
        .arg(ALIVE_FOR.as_millis() as u64)
        .query_async::<()>(con)
        .await?;
    let watched: Vec<(String, String)> = cluster
        .presence_watch
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    for (destination, companion) in watched {
        // Forget destinations this node no longer takes part in.
        let involved = broker.presence.has(&destination)
            || broker
                .histories
                .get(&companion)
                .is_some_and(|h| h.subscribers() > 0);
        if !involved {
            cluster
                .presence_watch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(destination.clone(), companion.clone()));
        }
        // This instance's counts, exactly as this node knows them.
        let mut resync = cluster.presence_script(RESYNC, &destination, &companion);
        resync
            .arg(&cluster.prefix)
            .arg(&destination)
            .arg(&cluster.instance);
        for (user, n) in broker.presence.local_counts(&destination) {
            resync
                .arg(format!("{}\u{1}{user}", cluster.instance))
                .arg(n);
        }
        resync.arg(cluster.key_ttl_ms());
        resync.query_async::<i64>(con).await?;
        cluster
            .presence_script(SWEEP, &destination, &companion)
            .arg(&cluster.prefix)
            .arg(&destination)
            .arg(cluster.key_ttl_ms())
            .query_async::<i64>(con)
            .await?;
    }
    Ok(())
}

/// Renews the expiry of every stream this node follows or serves (a history nobody writes to
/// stays while anyone reads it; a queue stream while any node has consumers for it).
async fn touch(
    cluster: &Cluster,
    con: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<()> {
    let mut keys = cluster.histories.keys();
    keys.extend(cluster.queues.keys());
    for chunk in keys.chunks(512) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("PEXPIRE")
                .arg(key)
                .arg(cluster.key_ttl_ms())
                .ignore();
        }
        pipe.query_async::<()>(con).await?;
    }
    Ok(())
}
