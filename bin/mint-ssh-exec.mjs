#!/usr/bin/env node
import { main } from '../dist/cli/mint-ssh-exec.js';
import { runCli } from '../dist/cli/run-cli.js';

runCli(main);
