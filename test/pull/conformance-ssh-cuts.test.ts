/** The job conformance suite (test/pull/conformance.ts), its cuts part, against the SSH method: a real sshd and the gateway. */
import { conformance } from './conformance.js';

conformance('ssh', 'cuts');
