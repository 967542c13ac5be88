/**
 * Durations the hot paths report as they happen. Counts stay plain integers that the metrics
 * adapter copies at scrape time (gateway/stats.ts, the authenticator's and front's stats);
 * a distribution cannot be copied that way, so each observation goes to an observer the
 * adapter injects. The standalone server's feeds prom-client histograms (server/metrics.ts);
 * without one nothing is recorded.
 */

// Observers run inside the handshake and request paths: they must be cheap and must not
// throw (a throw would cut the handshake or the decision short).

/** What the gateway reports (GatewayOptions.observer). */
export interface HandshakeObserver {
  /** A connection verified for the first time: seconds from its upgrade to its verified record being stored. */
  handshakeVerified(seconds: number): void
  /** A valid proof of work whose answer said how long it took (answer.pow.ms, untrusted), seconds. */
  powSolved(seconds: number): void
}

/** What an authenticator front reports (FrontOptions.observer). */
export interface DecisionObserver {
  /** Seconds the front took to decide one request, store read included. */
  requestDecided(seconds: number): void
}

export interface MetricsObserver extends HandshakeObserver, DecisionObserver {}

const ignore = (): void => {}

/** Records nothing: the default of the gateway and the front. */
export const NO_OBSERVER: MetricsObserver = Object.freeze({ handshakeVerified: ignore, powSolved: ignore, requestDecided: ignore })
