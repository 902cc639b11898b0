/**
 * `probe` of a pull-mode host (issue 18): what the MInt side can honestly say of a site it never
 * connects to. It reaches the hub (TCP), checks the hub's TLS identity against the profile's CA (or
 * the system's), has the hub accept the submit token and know the site, and reads what the hub has
 * seen of the site's agent: whether its long-poll is open now, when it last called, its version,
 * and its gateway's own probe report (sent by the agent at its start and every 5 minutes), from
 * which the same rsync, program, job-root and resources steps as over SSH are read, with their age.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { AuthError, ConnectError, GatewayError, MintSshError } from '../errors.js';
import type { ResolvedHost, PullTarget } from '../config/resolved-host.js';
import { openTcp } from '../connection/open-socket.js';
import { checkCompatible, PROTOCOL_VERSION } from '../gateway/protocol.js';
import { HubHttp, readCa, readToken } from '../pull/http.js';
import { API, type SiteReport } from '../pull/wire.js';
import { siteSteps, type ProbeResult, type ProbeStep, type ProbeStepName } from './probe.js';

/** An agent not heard from for this long is not serving the site (it polls every 25 s, retries within 30 s). */
const AGENT_GONE_MS = 90_000;

export async function probePull(host: ResolvedHost, pull: PullTarget, result: ProbeResult, fail: (step: ProbeStepName, error: unknown) => ProbeResult): Promise<ProbeResult> {
  const steps: ProbeStep[] = result.steps;
  const label = host.name;
  const url = new URL(pull.hub);
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 443);

  let tcpConnectMs: number;
  let address: string;
  try {
    address = isIP(hostname) ? hostname : (await lookup(hostname)).address;
  } catch (error) {
    return fail('reach', new ConnectError('HOST_UNREACHABLE', `cannot resolve the hub's name ${hostname} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, { host: label, cause: error, hint: 'check hub: in the profile' }));
  }
  try {
    const t = performance.now();
    const socket = await openTcp({ host: address, port, timeoutMs: host.connectTimeoutMs, label });
    tcpConnectMs = performance.now() - t;
    socket.destroy();
    steps.push({ step: 'reach', ok: true, detail: `hub ${hostname} is ${address}; TCP port ${port} open (${tcpConnectMs.toFixed(1)} ms)` });
  } catch (error) {
    return fail('reach', error instanceof MintSshError ? Object.assign(error, { hint: error.hint ?? 'is the hub running (`mint-ssh-exec hub --data DIR --listen HOST:PORT`) and its port open to this machine?' }) : error);
  }

  let ca: string | undefined;
  let token: string;
  try {
    ca = readCa(pull.ca, `host ${label}`);
    token = readToken(pull.tokenFile, `host ${label}`);
  } catch (error) {
    return fail('config', error);
  }

  // The hub's TLS identity, as HubHttp will check it: the certificate chain against the CA, the name against the URL.
  const t0 = performance.now();
  try {
    const identity = await tlsIdentity(address, port, hostname, ca, host.connectTimeoutMs);
    steps.push({
      step: 'tls',
      ok: true,
      detail: `${identity.protocol}, certificate ${identity.subject} issued by ${identity.issuer}, valid until ${identity.validTo}, SHA-256 ${identity.fingerprint}; trusted through ${pull.ca ? `hubCa ${pull.ca}` : "the system's CAs"} (TLS connect ${(performance.now() - t0).toFixed(0)} ms)`,
    });
  } catch (error) {
    return fail('tls', error);
  }
  const tlsConnectMs = performance.now() - t0;

  const http = new HubHttp({ hub: pull.hub, token, name: label, ...(ca ? { ca } : {}) });
  try {
    let report: SiteReport;
    const rounds: number[] = [];
    const ask = async (): Promise<SiteReport> => {
      const t = performance.now();
      const answer = await http.call<SiteReport>('GET', `${API}/sites/${encodeURIComponent(pull.site)}`, { idleMs: host.connectTimeoutMs });
      rounds.push(performance.now() - t);
      return answer;
    };
    try {
      report = await ask();
    } catch (error) {
      if (error instanceof AuthError) return fail('auth', Object.assign(error, { hint: `the submit token in ${pull.tokenFile} is not (or no longer) the hub's: hub init writes DATA/submit.token` }));
      if (error instanceof GatewayError && error.gatewayCode === 'E_NOSITE') {
        steps.push({ step: 'auth', ok: true, detail: `the hub accepts the submit token from ${pull.tokenFile}` });
        return fail('site', Object.assign(error, { hint: `on the hub: mint-ssh-exec hub add-site ${pull.site} --data DIR (a revoked site needs it again, with a new token)` }));
      }
      if (error instanceof GatewayError && error.gatewayCode === 'E_NOTFOUND') return fail('site', new GatewayError('GATEWAY_INCOMPATIBLE', `the hub at ${pull.hub} does not report on sites (an older mint-ssh-exec hub)`, { host: label, hint: 'upgrade mint-ssh-exec on the hub' }));
      return fail('auth', error);
    }
    steps.push({ step: 'auth', ok: true, detail: `the hub accepts the submit token from ${pull.tokenFile}` });
    steps.push({ step: 'site', ok: true, detail: `site ${pull.site} is known to the hub (its token is not revoked)` });

    const agent = report.agent;
    const ago = (at: number): string => `${Math.max(0, (report.now - at) / 1000).toFixed(0)} s ago`;
    if (!agent) {
      steps.push({
        step: 'agent',
        ok: false,
        detail: `no agent of site ${pull.site} has called the hub since the hub started; jobs wait at the hub until one does`,
        hint: `on the site: mint-ssh-exec agent --hub ${pull.hub} --site ${pull.site} --token-file FILE --root DIR --program PATH (outbound HTTPS only)`,
      });
      return result;
    }
    result.agent = {
      connected: agent.polling,
      lastSeenMs: Math.max(0, report.now - agent.lastSeenAt),
      ...(agent.info ? { version: agent.info.version, reportedMs: Math.max(0, report.now - (agent.infoAt ?? report.now)) } : {}),
    };
    const version = agent.info ? `mint-ssh-exec ${agent.info.version}` : 'version not reported';
    if (agent.polling) {
      steps.push({ step: 'agent', ok: true, detail: `connected: its long-poll is open at the hub now (agent ${version}), so a job starts within a second` });
    } else if (report.now - agent.lastSeenAt < AGENT_GONE_MS) {
      steps.push({ step: 'agent', ok: true, detail: `last called the hub ${ago(agent.lastSeenAt)} (agent ${version}); no long-poll open this instant`, warning: 'an agent between two polls, or one retrying after an error: probe again to see it connected' });
    } else {
      steps.push({
        step: 'agent',
        ok: false,
        detail: `last called the hub ${ago(agent.lastSeenAt)} and is not connected now; jobs wait at the hub until it is back`,
        hint: 'on the site: is `mint-ssh-exec agent` running, and can it reach the hub (its log says why not)?',
      });
      return result;
    }

    if (!agent.info) {
      steps.push({ step: 'gateway', ok: false, detail: "the agent has not reported its gateway (an older agent, or its gateway's probe failed: see the agent's log)", hint: 'upgrade mint-ssh-exec on the site, or look at what the agent logged' });
      return result;
    }
    const fields = new Map(Object.entries(agent.info.fields));
    const report2 = { protocol: Number(fields.get('mint-gw')), version: fields.get('version') ?? 'unknown', fields };
    try {
      if (!Number.isInteger(report2.protocol)) throw new GatewayError('GATEWAY_PROTOCOL', "the agent's report holds no gateway protocol (no mint-gw= fact)", { host: label });
      checkCompatible(report2, { host: label, step: 'probe' });
    } catch (error) {
      return fail('gateway', error);
    }
    result.gateway = { protocol: report2.protocol, version: report2.version };
    steps.push({ step: 'gateway', ok: true, detail: `mint gateway ${report2.version}, protocol ${report2.protocol} (client speaks ${PROTOCOL_VERSION}), run by the agent on the site; its report is from ${ago(agent.infoAt ?? report.now)}` });
    if (!siteSteps(fields, steps, result)) return result;

    for (let i = 0; i < 2; i++) await ask();
    const verbRoundTripMs = Math.min(...rounds);
    result.latency = { tcpConnectMs, tlsConnectMs, verbRoundTripMs };
    steps.push({ step: 'latency', ok: true, detail: `hub request round trip ${verbRoundTripMs.toFixed(1)} ms, TCP connect ${tcpConnectMs.toFixed(1)} ms, TLS connect ${tlsConnectMs.toFixed(1)} ms` });
    result.ok = steps.every((s) => s.ok);
    return result;
  } finally {
    http.close();
  }
}

interface Identity {
  protocol: string;
  subject: string;
  issuer: string;
  validTo: string;
  fingerprint: string;
}

/** One TLS handshake with the hub: its certificate, checked as HubHttp checks it; an AuthError when it is not trusted. */
function tlsIdentity(address: string, port: number, name: string, ca: string | undefined, timeoutMs: number): Promise<Identity> {
  return new Promise((resolvePromise, reject) => {
    const socket = tls.connect({ host: address, port, ...(isIP(name) ? {} : { servername: name }), ...(ca ? { ca } : {}), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectError('CONNECT_TIMEOUT', `the hub at ${address}:${port} did not complete a TLS handshake in ${timeoutMs} ms`, { hint: 'is it a mint-ssh-exec hub (HTTPS) on that port?' }));
    }, timeoutMs);
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ConnectError('CONNECTION_LOST', `TLS with the hub at ${address}:${port} failed: ${error.code ?? error.message}`, { hint: 'is it a mint-ssh-exec hub (HTTPS) on that port?', cause: error }));
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = socket.getPeerCertificate();
      const cn = (x: tls.PeerCertificate['subject'] | undefined): string => (x?.CN ? `CN=${x.CN}` : 'no CN');
      const identity: Identity = {
        protocol: socket.getProtocol() ?? 'TLS',
        subject: `${cn(cert.subject)}${cert.subjectaltname ? ` (${cert.subjectaltname})` : ''}`,
        issuer: cn(cert.issuer),
        validTo: cert.valid_to ?? '?',
        fingerprint: cert.fingerprint256 ?? '?',
      };
      const nameProblem = tls.checkServerIdentity(name, cert);
      const chainProblem = socket.authorized ? undefined : String(socket.authorizationError);
      socket.destroy();
      if (chainProblem || nameProblem) {
        reject(
          new AuthError(`the hub's certificate (${identity.subject}, issued by ${identity.issuer}) is not trusted here: ${chainProblem ?? nameProblem!.message}`, {
            hint: chainProblem
              ? "give the hub's CA (its DATA/ca.pem from `hub init`) as the profile's hubCa, or use a certificate from a public CA"
              : `the certificate is not for ${name}: give hub init --name ${name}, or use the name it is for in hub:`,
          }),
        );
        return;
      }
      resolvePromise(identity);
    });
  });
}

