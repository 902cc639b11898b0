#!/usr/bin/perl
# The program rsync runs as its remote shell, in Perl: the same relay as rsh-shim.mjs (see its
# header for the wire format), chosen when perl is there because it starts in ~15 ms where Node
# takes ~70 ms, and rsync starts its remote shell twice per job.
#
# Both directions are non-blocking with bounded buffers: a blocking write one way while the other
# way fills up would deadlock rsync's two streams against each other.
use strict;
use warnings;
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
# No POSIX, IO::Socket or Socket: they were most of perl's start-up time (~18 of ~21 ms), and
# rsync starts its remote shell twice per job.

# rsync signals its remote shell with SIGUSR1 when it gives up.
$SIG{USR1} = sub { exit 12 };
$SIG{PIPE} = 'IGNORE';

# Our end of the link to mint-ssh-exec is an fd we inherited from rsync, which got it from
# mint-ssh-exec: nothing to connect to, nothing another user could reach.
my $fd = $ENV{MINT_RSH_FD};
my $sock;
if (!defined $fd || $fd !~ /^[0-9]+$/ || !open($sock, '+<&=', $fd)) {
  print STDERR "mint-rsh: not started by mint-ssh-exec (no link on fd MINT_RSH_FD)\n";
  exit 12;
}
binmode($sock);

sub json_string {
  my ($s) = @_;
  $s =~ s/(["\\])/\\$1/g;
  $s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord($1))/ge;
  return "\"$s\"";
}

sub nonblocking {
  my ($fh) = @_;
  my $flags = fcntl($fh, F_GETFL, 0) or die "fcntl: $!";
  fcntl($fh, F_SETFL, $flags | O_NONBLOCK) or die "fcntl: $!";
}

my $LIMIT = 1 << 20;
my $to_sock = "{\"argv\":[" . join(',', map { json_string($_) } @ARGV) . "]}\n";
my $to_stdout = '';
my $from_sock = '';
my ($stdin_eof, $sock_eof, $shut, $exit_code) = (0, 0, 0, undef);

nonblocking(\*STDIN);
nonblocking(\*STDOUT);
nonblocking($sock);

sub finish {
  my ($code) = @_;
  exit($code < 0 ? 255 : $code);
}

while (1) {
  if (defined $exit_code && $to_stdout eq '') { finish($exit_code); }
  if ($sock_eof && $to_stdout eq '') { finish(defined $exit_code ? $exit_code : -1); }
  if ($stdin_eof && $to_sock eq '' && !$shut) {
    shutdown($sock, 1);
    $shut = 1;
  }

  my ($rin, $win) = ('', '');
  vec($rin, 0, 1) = 1 if !$stdin_eof && length($to_sock) < $LIMIT;
  vec($rin, fileno($sock), 1) = 1 if !$sock_eof && length($to_stdout) < $LIMIT;
  vec($win, fileno($sock), 1) = 1 if $to_sock ne '';
  vec($win, 1, 1) = 1 if $to_stdout ne '';
  my $n = select(my $rout = $rin, my $wout = $win, undef, undef);
  if ($n < 0) {
    next if $! == EINTR;
    finish(255);
  }

  if (vec($rout, 0, 1)) {
    my $got = sysread(STDIN, my $buf, 262144);
    if (defined $got) {
      if ($got == 0) { $stdin_eof = 1 } else { $to_sock .= $buf }
    } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
      $stdin_eof = 1;
    }
  }
  if ($to_sock ne '' && vec($wout, fileno($sock), 1)) {
    my $put = syswrite($sock, $to_sock);
    if (defined $put) { substr($to_sock, 0, $put) = '' }
    elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) { print STDERR "mint-rsh: lost the link to mint-ssh-exec: $!\n"; finish(255) }
  }
  if (vec($rout, fileno($sock), 1)) {
    my $got = sysread($sock, my $buf, 262144);
    if (defined $got) {
      if ($got == 0) { $sock_eof = 1 } else { $from_sock .= $buf }
    } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
      $sock_eof = 1;
    }
    # Frames: type (1 byte), length (4 bytes, big endian), payload.
    while (length($from_sock) >= 5) {
      my ($type, $len) = unpack('C N', $from_sock);
      last if length($from_sock) < 5 + $len;
      my $payload = substr($from_sock, 5, $len);
      substr($from_sock, 0, 5 + $len) = '';
      if ($type == 1) { $to_stdout .= $payload }
      elsif ($type == 2) { syswrite(STDERR, $payload) }
      elsif ($type == 3) { $exit_code = unpack('l>', $payload) }
    }
  }
  if ($to_stdout ne '' && vec($wout, 1, 1)) {
    my $put = syswrite(STDOUT, $to_stdout);
    if (defined $put) { substr($to_stdout, 0, $put) = '' }
    elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) { finish(255) }
  }
}
