//! VRRP high availability (issue 9). This file is a placeholder owned by
//! the VRRP driver's author; the I/O modules below are the raw socket, the
//! gratuitous ARP / unsolicited NA sender and the notify script runner.

pub mod announce;
pub mod notify;
pub mod socket;
