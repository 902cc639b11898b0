/** OpenSSH's small rules, written once (src/config/openssh.ts). */
import { describe, expect, it } from 'vitest';
import { expandTilde, expandTokens, knownHostsName, matchHostPatterns, wildcardMatch } from '../../src/config/openssh.js';

describe('openssh rules', () => {
  it('expands %-tokens and refuses an unknown one, naming where and what is supported', () => {
    expect(expandTokens('nc %h %p 100%%', { h: 'calc', p: '22' }, 'ProxyCommand')).toBe('nc calc 22 100%');
    expect(() => expandTokens('x %d', { h: 'calc' }, 'ProxyCommand', 'config:3')).toThrow('config:3: unknown token %d in ProxyCommand (supported here: %% %h)');
  });

  it('expands ~ and ~/ only, and refuses ~user', () => {
    expect(expandTilde('~', '/home/u')).toBe('/home/u');
    expect(expandTilde('~/.ssh/id', '/home/u/')).toBe('/home/u/.ssh/id');
    expect(expandTilde('/etc/x', '/home/u')).toBe('/etc/x');
    expect(() => expandTilde('~root/x', '/home/u', 'IdentityFile')).toThrow('IdentityFile: ~user paths are not supported');
  });

  it('matches pattern lists with * ? and !negation', () => {
    expect(wildcardMatch('calc.example.org', '*.example.???', false)).toBe(true);
    expect(matchHostPatterns('calc.example.org', ['*.example.org', '!calc.*'], false)).toBe(false);
    expect(matchHostPatterns('CALC', ['calc'], true)).toBe(true);
    expect(matchHostPatterns('CALC', ['calc'], false)).toBe(false);
  });

  it('keys known_hosts by the lowercased host, bracketed with a port other than 22', () => {
    expect(knownHostsName('Calc.Example.ORG', 22)).toBe('calc.example.org');
    expect(knownHostsName('Calc', 2222)).toBe('[calc]:2222');
  });
});
