#!/usr/bin/perl
# Net::SMPP (Debian's libnet-smpp-perl) as a real ESME against the broker, for
# tests/interop/netsmpp.rs.
#
# Usage: netsmpp_client.pl SCENARIO HOST PORT [ARG...]
#
# Every PDU Net::SMPP writes or reads, and every step of a scenario, is printed on
# stdout as one JSON object per line ({"event":"recv","command":...}). The Rust
# test asserts on those lines; this script checks nothing itself. Exit 0: the
# scenario ran to its end ("done"); 1: it died (the reason in an "exception"
# event); 2: a usage error.
#
# Net::SMPP is used as its documentation says: synchronous requests, and a
# `handlers` table for what the SMSC sends unasked. Its wait_pdu() drops any PDU
# that is neither the awaited response nor in that table, and the constructor's
# `handlers` replaces the built-in table (which only answers enquire_link), so
# the table here names enquire_link, deliver_sm and unbind. While no request is
# pending, `pump` reads PDUs itself (read_pdu behind a select with a deadline) and
# hands them to the same table. Net::SMPP does no text encoding: GSM 03.38
# (unpacked, one septet an octet) comes from Encode's gsm0338 and UCS-2 from
# UTF-16BE; concatenation UDHs are built and parsed here.

use strict;
use warnings;

use Encode qw(decode encode);
use IO::Select;
use JSON::PP;
use Net::SMPP;
use Time::HiRes qw(time);

my $STARTED = time;
my $JSON    = JSON::PP->new->ascii->canonical;

# Addresses of the messages this script submits (TON 1, NPI 1).
my $SOURCE      = '4915112345';
my $DESTINATION = '4917612345';

# One concatenation segment: 153 GSM septets or 67 UTF-16 units after the
# 6-octet UDH (05 00 03 reference total number).
my $GSM_SEGMENT  = 153;
my $UCS2_SEGMENT = 134;

sub emit {
    my ( $event, %fields ) = @_;
    $fields{event} = $event;
    $fields{t_ms}  = int( ( time - $STARTED ) * 1000 );
    print $JSON->encode( \%fields ), "\n";
}

sub ms_since { int( ( time - $_[0] ) * 1000 ) }

sub command_name {
    my ($id) = @_;
    my $known = Net::SMPP::pdu_tab->{$id};
    return $known ? $known->{cmd} : sprintf( 'unknown_0x%08x', $id );
}

# Net::SMPP, unchanged but for one event per PDU in and out.
package TracingSMPP;
our @ISA = ('Net::SMPP');

sub read_pdu {
    my $me  = shift;
    my $pdu = $me->SUPER::read_pdu(@_);
    if ($pdu) {
        main::emit(
            'recv',
            client   => ${*$me}{interop_name},
            command  => main::command_name( $pdu->{cmd} ),
            sequence => $pdu->{seq},
            status   => $pdu->{status},
        );
    }
    return $pdu;
}

sub syswrite {
    my ( $me, $buf ) = @_;
    my ( undef, $cmd, $status, $seq ) = unpack 'NNNN', $buf;
    main::emit(
        'send',
        client   => ${*$me}{interop_name},
        command  => main::command_name($cmd),
        sequence => $seq,
        status   => $status,
    );
    return $me->SUPER::syswrite($buf);
}

package main;

# --- what the SMSC sends unasked -----------------------------------------------

# Answers deliver_sm with deliver_sm_resp (Net::SMPP croaks without a message_id,
# although SMPP 3.4 leaves it unused: an empty one goes) and keeps it for `pump`.
sub on_deliver_sm {
    my ( $me, $pdu ) = @_;
    push @{ ${*$me}{interop_inbox} }, $pdu;
    $me->deliver_sm_resp( message_id => '', seq => $pdu->{seq} );
}

sub on_unbind {
    my ( $me, $pdu ) = @_;
    ${*$me}{interop_unbound} = 1;
    $me->unbind_resp( seq => $pdu->{seq} );
}

sub handlers {
    return {
        Net::SMPP::CMD_enquire_link, \&Net::SMPP::handle_enquire_link,
        Net::SMPP::CMD_deliver_sm,   \&on_deliver_sm,
        Net::SMPP::CMD_unbind,       \&on_unbind,
    };
}

# --- sessions -------------------------------------------------------------------

# Connects and binds as `kind` (transmitter, receiver, transceiver); the session
# whether or not the bind was taken (`interop_bound`).
sub esme {
    my ( $name, $host, $port, $kind, $system_id, $password ) = @_;
    my $smpp = TracingSMPP->new_connect(
        $host,
        port      => $port,
        timeout   => 10,
        system_id => $system_id,
        password  => $password,
        handlers  => handlers(),
    ) or die "cannot connect to $host:$port: $!\n";
    ${*$smpp}{interop_name}  = $name;
    ${*$smpp}{interop_inbox} = [];
    emit( 'connected', client => $name );
    my $bind = "bind_$kind";
    my $resp = $smpp->$bind() or die "$bind: ${*$smpp}{smpperror}\n";
    if ( $resp->status ) {
        emit(
            'bind_failed',
            client  => $name,
            command => command_name( $resp->{cmd} ),
            status  => $resp->status,
            explain => $resp->explain_status,
        );
        return $smpp;
    }
    my $version = $resp->{sc_interface_version};
    emit(
        'bound',
        client               => $name,
        kind                 => $kind,
        command              => command_name( $resp->{cmd} ),
        status               => $resp->status,
        system_id            => $resp->{system_id},
        sc_interface_version => defined $version ? unpack( 'C', $version ) : undef,
    );
    ${*$smpp}{interop_bound} = 1;
    return $smpp;
}

# A session whose bind was taken, or death.
sub bound_esme {
    my $smpp = esme(@_);
    die "the bind was refused\n" unless ${*$smpp}{interop_bound};
    return $smpp;
}

# A synchronous request's response (or death with Net::SMPP's reason), as an event.
sub answered {
    my ( $smpp, $label, $request, $resp, %extra ) = @_;
    die "$request ($label): ${*$smpp}{smpperror}\n" unless $resp;
    emit(
        'response',
        client   => ${*$smpp}{interop_name},
        label    => $label,
        request  => $request,
        command  => command_name( $resp->{cmd} ),
        status   => $resp->status,
        sequence => $resp->seq,
        %extra,
    );
    return $resp;
}

# The addresses of every message this script sends.
my @ADDRESSES = (
    source_addr_ton  => 1,
    source_addr_npi  => 1,
    source_addr      => $SOURCE,
    dest_addr_ton    => 1,
    dest_addr_npi    => 1,
    destination_addr => $DESTINATION,
);

sub submit {
    my ( $smpp, $label, %fields ) = @_;
    my $resp = $smpp->submit_sm( @ADDRESSES, %fields );
    return answered( $smpp, $label, 'submit_sm', $resp, message_id => $resp && $resp->{message_id} );
}

# Reads PDUs (each handed to the handlers table) until `done` returns true or
# `seconds` pass.
sub pump {
    my ( $smpp, $seconds, $done ) = @_;
    my $deadline = time + $seconds;
    my $select   = IO::Select->new($smpp);
    until ( $done->() ) {
        my $left = $deadline - time;
        die "nothing more within ${seconds}s\n" if $left <= 0;
        next unless $select->can_read($left);
        my $pdu = $smpp->read_pdu() or die "read_pdu: ${*$smpp}{smpperror}\n";
        my $handler = ${*$smpp}{handlers}{ $pdu->{cmd} };
        if   ($handler) { $handler->( $smpp, $pdu ) }
        else            { emit( 'unhandled', client => ${*$smpp}{interop_name}, command => command_name( $pdu->{cmd} ) ) }
    }
}

# unbind (synchronous), then waits for the broker to close the connection.
sub unbind_and_close {
    my ($smpp) = @_;
    my $resp = $smpp->unbind() or die "unbind: ${*$smpp}{smpperror}\n";
    emit(
        'unbound',
        client  => ${*$smpp}{interop_name},
        command => command_name( $resp->{cmd} ),
        status  => $resp->status
    );
    expect_closed($smpp);
}

# Waits up to 10 s for EOF; anything read before it is reported.
sub expect_closed {
    my ($smpp) = @_;
    my $name   = ${*$smpp}{interop_name};
    my $since  = time;
    my $select = IO::Select->new($smpp);
    while ( $select->can_read( 10 - ( time - $since ) ) ) {
        my $n = sysread( $smpp, my $octets, 4096 );
        if ( !$n ) {
            emit( 'closed', client => $name, after_ms => ms_since($since) );
            return;
        }
        emit( 'data_before_close', client => $name, hex => unpack( 'H*', $octets ) );
    }
    emit( 'still_open', client => $name );
}

# --- texts ----------------------------------------------------------------------

# `text` in `charset`, dying on a character it lacks. (Encode with a CHECK
# argument eats its input unless told LEAVE_SRC.)
sub octets {
    my ( $charset, $text ) = @_;
    return encode( $charset, $text, Encode::FB_CROAK | Encode::LEAVE_SRC );
}

# A text cut into pieces of at most `limit` encoded octets, never inside a
# character (a GSM escape pair, a UTF-16 surrogate pair).
sub cut {
    my ( $charset, $text, $limit ) = @_;
    my @pieces = ('');
    for my $char ( split //, $text ) {
        my $octets = octets( $charset, $char );
        push @pieces, '' if length( $pieces[-1] ) + length($octets) > $limit;
        $pieces[-1] .= $octets;
    }
    return @pieces;
}

my $next_reference = 0x41;

# The Encode name of data_coding 0 (GSM 03.38, unpacked) or 8 (UCS-2).
sub charset { $_[0] == 8 ? 'UTF-16BE' : 'gsm0338' }

# Tells the test what a message is before it is sent (`message` event).
sub announce {
    my ( $smpp, $label, $text, $data_coding, $esm_class, $parts ) = @_;
    emit(
        'message',
        client      => ${*$smpp}{interop_name},
        label       => $label,
        text        => $text,
        data_coding => $data_coding,
        esm_class   => $esm_class,
        parts       => $parts,
    );
}

# Submits `text` (GSM 03.38 or UCS-2, as `data_coding` says) in one submit_sm, or
# when it is too long for one SMS in UDH-concatenated parts (esm_class 0x40).
sub submit_text {
    my ( $smpp, $label, $data_coding, $text, %fields ) = @_;
    my $charset = charset($data_coding);
    my ( $segment, $single ) = $data_coding == 8 ? ( $UCS2_SEGMENT, 140 ) : ( $GSM_SEGMENT, 160 );
    my $whole = octets( $charset, $text );
    my @parts = length($whole) <= $single ? ($whole) : cut( $charset, $text, $segment );
    my $esm_class = @parts > 1 ? 0x40 : 0x00;
    announce( $smpp, $label, $text, $data_coding, $esm_class, scalar @parts );
    my $reference = $next_reference++;
    my @responses;
    for my $i ( 0 .. $#parts ) {
        my $udh = @parts > 1 ? pack( 'C6', 5, 0, 3, $reference, scalar @parts, $i + 1 ) : '';
        push @responses,
          submit(
            $smpp, $label,
            esm_class     => $esm_class,
            data_coding   => $data_coding,
            short_message => $udh . $parts[$i],
            %fields,
          );
    }
    return @responses;
}

# The whole text in the message_payload TLV (by its name, as Net::SMPP takes it)
# of one submit_sm (short_message empty) or data_sm.
sub submit_payload {
    my ( $smpp, $label, $request, $data_coding, $text ) = @_;
    announce( $smpp, $label, $text, $data_coding, 0, 1 );
    my @fields = ( @ADDRESSES, data_coding => $data_coding );
    my $payload = octets( charset($data_coding), $text );
    my $resp =
      $request eq 'data_sm'
      ? $smpp->data_sm( @fields, message_payload => $payload )
      : $smpp->submit_sm( @fields, short_message => '', message_payload => $payload );
    return answered( $smpp, $label, $request, $resp, message_id => $resp && $resp->{message_id} );
}

# (reference, total, number, body) of a concatenation UDH (IEI 00, 8-bit
# reference, or 08, 16-bit), or an empty list.
sub concatenation {
    my ($short_message) = @_;
    my $udh_length = unpack 'C', $short_message;
    my $udh        = substr $short_message, 1, $udh_length;
    my $body       = substr $short_message, 1 + $udh_length;
    while ( length $udh >= 2 ) {
        my ( $iei, $length ) = unpack 'CC', $udh;
        my $ie = substr $udh, 2, $length;
        return ( unpack( 'CCC', $ie ), $body ) if $iei == 0x00 && $length == 3;
        return ( unpack( 'nCC', $ie ), $body ) if $iei == 0x08 && $length == 4;
        substr( $udh, 0, 2 + $length ) = '';
    }
    return ();
}

sub decode_text {
    my ( $data_coding, $octets ) = @_;
    return undef unless $data_coding == 0 || $data_coding == 8;
    return decode( charset($data_coding), $octets );
}

# A TLV as Net::SMPP leaves it (raw octets under its symbolic name) in hex.
sub tlv_hex {
    my ( $pdu, $name ) = @_;
    return defined $pdu->{$name} ? unpack( 'H*', $pdu->{$name} ) : undef;
}

# What every deliver_sm event reports of its PDU.
sub deliver_sm_fields {
    my ($pdu) = @_;
    return (
        client      => 'esme',
        esm_class   => $pdu->{esm_class},
        data_coding => $pdu->{data_coding},
        source_addr => $pdu->{source_addr},
    );
}

# --- scenarios ------------------------------------------------------------------

# bind KIND: binds as demo, submits unless a receiver, enquire_link, unbind.
sub scenario_bind {
    my ( $host, $port, $kind ) = @_;
    my $smpp = bound_esme( 'esme', $host, $port, $kind, 'demo', 'demo1234' );
    # Net::SMPP keeps no bind state: a receiver's submit_sm goes out too.
    submit( $smpp, 'submit', short_message => octets( charset(0), 'hello from Net::SMPP' ) );
    answered( $smpp, 'ping', 'enquire_link', $smpp->enquire_link() );
    unbind_and_close($smpp);
}

# bind_error KIND SYSTEM_ID PASSWORD: a bind the broker refuses.
sub scenario_bind_error {
    my ( $host, $port, $kind, $system_id, $password ) = @_;
    my $smpp = esme( 'esme', $host, $port, $kind, $system_id, $password );
    die "the bind was accepted\n" if ${*$smpp}{interop_bound};
    expect_closed($smpp);
}

# texts: GSM 03.38 with extension characters and @ (0x00), UCS-2 with Cyrillic
# and an emoji, long GSM and UCS-2 texts cut by this client into UDH parts, a long
# UCS-2 text in submit_sm's message_payload, and a GSM text in a data_sm.
sub scenario_texts {
    my ( $host, $port ) = @_;
    my $smpp = bound_esme( 'esme', $host, $port, 'transceiver', 'demo', 'demo1234' );
    submit_text( $smpp, 'gsm7', 0, "Price: 5\x{20AC} {x} [y] ~ ^ \\ | \@home \x{A3}\$ \x{E8}\x{E9} \x{394}\x{3A9}" );
    submit_text( $smpp, 'ucs2', 8, "\x{41F}\x{440}\x{438}\x{432}\x{435}\x{442}, \x{43C}\x{438}\x{440} \x{1F600}!" );
    my $fox = 'The quick brown fox jumps over the lazy dog 0123456789. ';
    submit_text( $smpp, 'long_gsm', 0, substr( $fox x 3, 0, 152 ) . "\x{20AC} {braces} [brackets] " . $fox x 4 );
    my $privet = "\x{41F}\x{440}\x{438}\x{432}\x{435}\x{442}, \x{43C}\x{438}\x{440}! ";
    submit_text( $smpp, 'long_ucs2', 8, substr( $privet x 6, 0, 66 ) . "\x{1F600}" . $privet x 7 );
    submit_payload( $smpp, 'payload', 'submit_sm', 8, "\x{1F600} " . $privet x 12 );
    submit_payload( $smpp, 'data_sm', 'data_sm', 0, "data_sm: 5\x{20AC} [ok] \@home " . $fox x 2 );
    unbind_and_close($smpp);
}

# receipt: as acme, a submit asking for a receipt (with user_message_reference
# 4242), the receipt as deliver_sm, query_sm, unbind.
sub scenario_receipt {
    my ( $host, $port ) = @_;
    my $smpp = bound_esme( 'esme', $host, $port, 'transceiver', 'acme', 'acme1234' );
    my $text = "Your code is 1234 {5\x{20AC}} ok";
    announce( $smpp, 'submit', $text, 0, 0, 1 );
    my $resp = submit(
        $smpp, 'submit',
        registered_delivery    => 1,
        short_message          => octets( charset(0), $text ),
        user_message_reference => pack( 'n', 4242 ),
    );
    my $message_id = $resp->{message_id};
    emit( 'submitted', client => 'esme', message_id => $message_id );
    my $inbox = ${*$smpp}{interop_inbox};
    pump( $smpp, 30, sub { @$inbox } );
    my $r     = $inbox->[0];
    my @tags  = sort { $a <=> $b } grep { /^\d+$/ } keys %$r;
    my $state = $r->{message_state};
    my $umr   = $r->{user_message_reference};
    emit(
        'receipt',
        deliver_sm_fields($r),
        destination_addr         => $r->{destination_addr},
        ton_npi                  => "$r->{source_addr_ton}/$r->{source_addr_npi} > $r->{dest_addr_ton}/$r->{dest_addr_npi}",
        short_message            => decode_text( $r->{data_coding}, $r->{short_message} ),
        receipted_message_id_hex => tlv_hex( $r, 'receipted_message_id' ),
        message_state            => defined $state ? unpack( 'C', $state ) : undef,
        network_error_code_hex   => tlv_hex( $r, 'network_error_code' ),
        user_message_reference   => defined $umr ? unpack( 'n', $umr ) : undef,
        tlv_tags                 => join( ',', map { sprintf '0x%04x', $_ } @tags ),
    );
    my $q = $smpp->query_sm(
        message_id      => $message_id,
        source_addr_ton => 1,
        source_addr_npi => 1,
        source_addr     => $SOURCE,
    );
    answered(
        $smpp, 'query', 'query_sm', $q,
        message_id    => $q && $q->{message_id},
        message_state => $q && $q->{message_state},
        error_code    => $q && $q->{error_code},
        final_date    => $q && $q->{final_date},
    );
    unbind_and_close($smpp);
}

# mo COUNT: binds as acme receiver and puts incoming messages together (long
# ones come in UDH segments) until COUNT are whole.
sub scenario_mo {
    my ( $host, $port, $count ) = @_;
    my $smpp = bound_esme( 'esme', $host, $port, 'receiver', 'acme', 'acme1234' );
    emit( 'listening', client => 'esme' );
    my $inbox = ${*$smpp}{interop_inbox};
    my ( %partial, $whole );
    my $take = sub {
        while ( my $pdu = shift @$inbox ) {
            my ( $octets, $parts ) = ( $pdu->{short_message}, 1 );
            if ( $pdu->{esm_class} & 0x40 ) {
                my ( $reference, $total, $number, $body ) = concatenation($octets)
                  or die "esm_class 0x40 without a concatenation UDH\n";
                emit(
                    'segment',
                    client      => 'esme',
                    reference   => $reference,
                    total       => $total,
                    number      => $number,
                    data_coding => $pdu->{data_coding},
                    octets      => length $octets,
                    udh_hex     => unpack( 'H*', substr( $octets, 0, length($octets) - length($body) ) ),
                );
                my $key = join ':', $pdu->{source_addr}, $pdu->{data_coding}, $reference;
                $partial{$key}{$number} = $body;
                next if keys %{ $partial{$key} } < $total;
                my $set = delete $partial{$key};
                $octets = join '', map { $set->{$_} } 1 .. $total;
                $parts  = $total;
            }
            emit(
                'mo',
                deliver_sm_fields($pdu),
                parts       => $parts,
                text        => decode_text( $pdu->{data_coding}, $octets ),
                octets_hex  => unpack( 'H*', $octets ),
            );
            $whole++;
        }
        return $whole && $whole >= $count;
    };
    pump( $smpp, 30, $take );
    unbind_and_close($smpp);
}

# server_unbind: bound, reading (Net::SMPP answering through the handlers table)
# until the broker unbinds, then waits for the close.
sub scenario_server_unbind {
    my ( $host, $port ) = @_;
    my $smpp = bound_esme( 'esme', $host, $port, 'transceiver', 'demo', 'demo1234' );
    emit( 'listening', client => 'esme' );
    pump( $smpp, 30, sub { ${*$smpp}{interop_unbound} } );
    expect_closed($smpp);
}

my %SCENARIOS = (
    bind          => \&scenario_bind,
    bind_error    => \&scenario_bind_error,
    texts         => \&scenario_texts,
    receipt       => \&scenario_receipt,
    mo            => \&scenario_mo,
    server_unbind => \&scenario_server_unbind,
);

my ( $scenario, $host, $port, @args ) = @ARGV;
if ( !defined $port || !$SCENARIOS{$scenario} ) {
    print STDERR "usage: $0 SCENARIO HOST PORT [ARG...]; scenarios: ", join( ', ', sort keys %SCENARIOS ), "\n";
    exit 2;
}
$| = 1;
emit( 'start', scenario => $scenario, net_smpp => $Net::SMPP::VERSION, perl => sprintf( '%vd', $^V ) );
if ( !eval { $SCENARIOS{$scenario}->( $host, $port, @args ); 1 } ) {
    my $error = $@;
    chomp $error;
    emit( 'exception', message => $error );
    exit 1;
}
emit('done');
exit 0;
