/** The job conformance suite (test/pull/conformance.ts), its jobs part, against the SSH method: a real sshd and the gateway. */
import { conformance } from './conformance.js';

conformance('ssh', 'jobs');
