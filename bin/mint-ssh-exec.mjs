#!/usr/bin/env node
// The bundle with its code cache (dist/bundle/load.cjs): a fresh process per command starts fast.
import bundle from '../dist/bundle/load.cjs';

const { bin } = bundle.load();
bin.runCli(bin.mintSshExec);
