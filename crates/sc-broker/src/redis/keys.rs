//! Redis key names on a Redis Cluster: every key of a channel carries the channel's hash tag.

use crate::stream::PRESENCE_PREFIX;

/// The Redis key of kind `kind` for `channel` on a Redis Cluster:
/// `<prefix><kind>:{<tag>}<channel>`, where the tag is the channel without the presence
/// companion prefix and without `{` / `}` (`_` if that leaves nothing). A channel, its presence
/// companion and all their keys therefore hash to one slot; the full channel name after the tag
/// keeps keys unique.
///
/// ```
/// use sc_broker::redis::sharded::slot_key;
/// assert_eq!(slot_key("sc:", "h", "chat"), "sc:h:{chat}chat");
/// assert_eq!(slot_key("sc:", "ch", "#presence/chat"), "sc:ch:{chat}#presence/chat");
/// assert_eq!(slot_key("sc:", "ch", "{}"), "sc:ch:{_}{}");
/// ```
pub fn slot_key(prefix: &str, kind: &str, channel: &str) -> String {
    let base = channel.strip_prefix(PRESENCE_PREFIX).unwrap_or(channel);
    let mut tag: String = base.chars().filter(|c| *c != '{' && *c != '}').collect();
    if tag.is_empty() {
        tag.push('_');
    }
    format!("{prefix}{kind}:{{{tag}}}{channel}")
}
