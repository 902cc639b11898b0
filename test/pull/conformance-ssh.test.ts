/** The job conformance suite (test/pull/conformance.ts) against the SSH method: a real sshd and the gateway. */
import { conformance } from './conformance.js';

conformance('ssh');
