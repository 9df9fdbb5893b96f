//! The Lua the coordinator runs inside Redis: every decision that reads and writes shared
//! state is one script, so it is atomic, and every clock it reads is Redis' own `TIME`
//! (hosts' clocks never have to agree). Redis 7 replicates a script's effects, not the
//! script, so reading `TIME` before writing is allowed without `redis.replicate_commands`.
//! Calling the scripts, and what their answers mean to a run, is `budget.rs`'s and
//! `lease.rs`'s.

/// Redis' clock in microseconds (shared by every script).
const NOW: &str =
    "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n";

/// One permit of the shared GCRA bucket, reserved (KEYS: bucket, pause; ARGV: emission
/// interval µs, burst, longest reservation µs). The bucket holds the theoretical arrival
/// time (TAT). Answers `{0, 0}` (go now), `{1, µs}` (a slot is reserved that far ahead),
/// `{2, µs}` (every process is paused that long) or `{3, µs}` (the bucket is booked
/// further ahead than a reservation may reach: ask again after that long, nothing taken).
/// Reserving instead of answering "try again" serves callers in the order they asked,
/// so processes with the same demand get the same share.
pub fn permit() -> String {
    format!(
        "{NOW}{}",
        r#"
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return {2, pause - now} end
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local longest = tonumber(ARGV[3])
if wait > longest then return {3, wait - longest} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 60000)
if wait == 0 then return {0, 0} end
return {1, wait}
"#
    )
}

/// Pauses every process (KEYS: pause; ARGV: pause µs) unless a longer pause is already
/// set. Answers 1 when this call moved the end of the pause.
pub fn pause() -> String {
    format!(
        "{NOW}{}",
        r#"
local till = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > cur then
  redis.call('SET', KEYS[1], string.format('%d', till), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1)
  return 1
end
return 0
"#
    )
}

/// Takes the run lock (KEYS: lock, fencing counter; ARGV: holder record, lease ms):
/// `{token, ''}` when taken (the token is the fencing counter's next value), `{0, value}`
/// with the holder's `token|record` when it is held.
pub const ACQUIRE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 2592000000)
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
return {token, ''}
"#;

/// Renews the lease (KEYS: lock; ARGV: token, lease ms, this holder's `token|record`):
/// 1 renewed, 2 taken back (the key had expired, e.g. Redis restarted, and nobody else
/// took it), 0 lost (someone else holds it).
pub const RENEW: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
  return 2
end
if string.match(cur, '^(%d+)|') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Releases the lock if this token still holds it (KEYS: lock; ARGV: token).
pub const RELEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^(%d+)|') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Records that a process is alive (KEYS: the processes' sorted set; ARGV: its record)
/// and forgets those silent for a minute; the set itself expires two minutes after the
/// last heartbeat.
pub fn heartbeat() -> String {
    format!(
        "{NOW}{}",
        r#"
local secs = math.floor(now / 1000000)
redis.call('ZADD', KEYS[1], secs, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', secs - 60)
redis.call('EXPIRE', KEYS[1], 120)
return secs
"#
    )
}

/// The bucket, the pause and the processes seen in the last minute, read at one instant
/// (KEYS: bucket, pause, processes): `{now µs, TAT or '', pause end or '', records…}`.
pub fn status() -> String {
    format!(
        "{NOW}{}",
        r#"
local out = {string.format('%d', now), redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or ''}
local secs = math.floor(now / 1000000)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], secs - 60, '+inf')) do
  table.insert(out, m)
end
return out
"#
    )
}
