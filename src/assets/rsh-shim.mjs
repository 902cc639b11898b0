#!/usr/bin/env node
// The program rsync runs as its remote shell (`rsync --rsh=...`). It does not open a connection of
// its own: it relays rsync's stdin/stdout over a Unix socket it inherited from rsync (fd
// MINT_RSH_FD, made and handed down by the mint-ssh-exec process), which carries them in an exec
// channel on the job's one SSH connection. The wire format is in src/transfer/rsh-bridge.ts.
import net from 'node:net';

const fd = Number(process.env.MINT_RSH_FD);

// rsync signals its remote shell with SIGUSR1 when it gives up; without a listener that signal
// would start Node's inspector on a TCP port.
process.on('SIGUSR1', () => process.exit(12));
process.on('SIGPIPE', () => undefined);

/** @type {net.Socket} */
let socket;
try {
  if (!/^[0-9]+$/.test(process.env.MINT_RSH_FD ?? '')) throw new Error('MINT_RSH_FD unset');
  socket = new net.Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
} catch {
  process.stderr.write('mint-rsh: not started by mint-ssh-exec (no link on fd MINT_RSH_FD)\n');
  process.exit(12);
}
socket.write(`${JSON.stringify({ argv: process.argv.slice(2) })}\n`);

process.stdin.on('data', (chunk) => {
  if (!socket.write(chunk)) process.stdin.pause();
});
socket.on('drain', () => process.stdin.resume());
process.stdin.on('end', () => socket.end());
process.stdin.on('error', () => socket.end());

/** @type {Buffer} */
let pending = Buffer.alloc(0);
let exiting = false;

socket.on('data', (chunk) => {
  pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  while (pending.length >= 5) {
    const type = pending[0];
    const length = pending.readUInt32BE(1);
    if (pending.length < 5 + length) break;
    const payload = pending.subarray(5, 5 + length);
    pending = pending.subarray(5 + length);
    if (type === 1) {
      if (!process.stdout.write(payload)) {
        socket.pause();
        process.stdout.once('drain', () => socket.resume());
      }
    } else if (type === 2) {
      process.stderr.write(payload);
    } else if (type === 3) {
      exitWith(payload.readInt32BE(0));
      return;
    }
  }
});

// The exit status ends the shim: waiting for rsync to close our stdin could wait forever.
/** @param {number} code */
function exitWith(code) {
  if (exiting) return;
  exiting = true;
  const status = code < 0 ? 255 : code;
  process.stdout.write('', () => process.exit(status));
}

socket.on('error', (error) => {
  process.stderr.write(`mint-rsh: lost the link to mint-ssh-exec: ${error.message}\n`);
  process.exit(255);
});
socket.on('end', () => exitWith(-1));
