// The import row: a fresh `node` that only imports the package (compare with bench/lib/empty.mjs).
await import('mint-ssh-exec');
