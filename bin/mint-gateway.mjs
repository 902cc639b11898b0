#!/usr/bin/env node
import { main } from '../dist/cli/mint-gateway.js';

main().then((code) => {
  process.exitCode = code;
});
