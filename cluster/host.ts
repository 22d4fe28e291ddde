// Host names as routing compares them: lower-case, without port and trailing dot. The
// proxy's revision lookup and the queue's `host` rules read a Host header through this,
// so both agree on what `HELLO.example.com:80` is.

const HOST_NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

/**
 * The name part of a Host header value, normalised (`[::1]:80` → `[::1]`, `A.b.:8080` →
 * `a.b`); undefined when absent or not a plausible host name.
 */
export function hostName(host: string | undefined): string | undefined {
  if (!host) return undefined;
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(0, end + 1) : undefined;
  }
  const colon = h.indexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return HOST_NAME.test(h) ? h : undefined;
}
