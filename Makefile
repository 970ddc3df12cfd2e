# stepup — build, install and package.
#
#   make                      release build
#   make install              install under PREFIX (default /usr/local) into DESTDIR
#   make uninstall            remove what `make install` put there (never state or config)
#   make deb                  Debian package in target/debian/ (needs dpkg-dev)
#
# Paths follow the host: the PAM module goes to PAMDIR, found from where libpam's own
# modules live (Debian: /lib/x86_64-linux-gnu/security, Fedora/RHEL:
# /usr/lib64/security); override any variable on the command line, e.g.
#   make install PREFIX=/usr PAMDIR=/usr/lib64/security DESTDIR=/tmp/stage

PREFIX        ?= /usr/local
SBINDIR       ?= $(PREFIX)/sbin
BINDIR        ?= $(PREFIX)/bin
DATADIR       ?= $(PREFIX)/share
MANDIR        ?= $(DATADIR)/man
SYSCONFDIR    ?= /etc
DBUSPOLICYDIR ?= $(DATADIR)/dbus-1/system.d
PAMCONFIGSDIR ?= $(DATADIR)/pam-configs
BASHCOMPDIR   ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR    ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR   ?= $(DATADIR)/fish/vendor_completions.d
# Where the host's PAM modules are; the first directory holding pam_unix.so wins.
PAMDIR        ?= $(or $(patsubst %/pam_unix.so,%,$(firstword $(wildcard \
                   /lib/*/security/pam_unix.so /usr/lib/*/security/pam_unix.so \
                   /usr/lib64/security/pam_unix.so /lib64/security/pam_unix.so \
                   /lib/security/pam_unix.so /usr/lib/security/pam_unix.so))),/lib/security)
# systemd's unit directory: pkg-config knows it; Debian 12's default otherwise.
SYSTEMDUNITDIR ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)

CARGO   ?= cargo
PROFILE ?= release
TARGET  ?= target/$(PROFILE)
INSTALL ?= install

.PHONY: all build install uninstall deb completions

all: build

build:
	$(CARGO) build --profile $(PROFILE) -p pam_stepup -p stepupd

completions: build
	mkdir -p $(TARGET)/completions
	$(TARGET)/stepupctl completions bash > $(TARGET)/completions/stepupctl.bash
	$(TARGET)/stepupctl completions zsh  > $(TARGET)/completions/_stepupctl
	$(TARGET)/stepupctl completions fish > $(TARGET)/completions/stepupctl.fish

install: build completions
	$(INSTALL) -d -m 0755 $(DESTDIR)$(PAMDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 0644 $(TARGET)/libpam_stepup.so $(DESTDIR)$(PAMDIR)/pam_stepup.so
	$(INSTALL) -m 0755 $(TARGET)/stepupd $(DESTDIR)$(SBINDIR)/stepupd
	$(INSTALL) -m 0755 $(TARGET)/stepupctl $(DESTDIR)$(BINDIR)/stepupctl
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/stepup
	# The commented policy: never overwrite an admin's file.
	test -e $(DESTDIR)$(SYSCONFDIR)/stepup/stepupd.toml || \
	  $(INSTALL) -m 0644 etc/stepup/stepupd.toml $(DESTDIR)$(SYSCONFDIR)/stepup/stepupd.toml
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DBUSPOLICYDIR) $(DESTDIR)$(PAMCONFIGSDIR)
	sed 's|/usr/sbin/stepupd|$(SBINDIR)/stepupd|' packaging/systemd/stepupd.service \
	  > $(DESTDIR)$(SYSTEMDUNITDIR)/stepupd.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/stepupd.service
	$(INSTALL) -m 0644 packaging/systemd/stepupd.socket $(DESTDIR)$(SYSTEMDUNITDIR)/stepupd.socket
	$(INSTALL) -m 0644 packaging/dbus/org.stepup.Stepupd1.conf $(DESTDIR)$(DBUSPOLICYDIR)/org.stepup.Stepupd1.conf
	$(INSTALL) -m 0644 packaging/pam-configs/stepup $(DESTDIR)$(PAMCONFIGSDIR)/stepup
	$(INSTALL) -d -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0644 packaging/man/stepupctl.1 $(DESTDIR)$(MANDIR)/man1/stepupctl.1
	$(INSTALL) -m 0644 packaging/man/stepupd.toml.5 $(DESTDIR)$(MANDIR)/man5/stepupd.toml.5
	$(INSTALL) -m 0644 packaging/man/stepupd.8 $(DESTDIR)$(MANDIR)/man8/stepupd.8
	$(INSTALL) -m 0644 packaging/man/pam_stepup.8 $(DESTDIR)$(MANDIR)/man8/pam_stepup.8
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(INSTALL) -m 0644 $(TARGET)/completions/stepupctl.bash $(DESTDIR)$(BASHCOMPDIR)/stepupctl
	$(INSTALL) -m 0644 $(TARGET)/completions/_stepupctl $(DESTDIR)$(ZSHCOMPDIR)/_stepupctl
	$(INSTALL) -m 0644 $(TARGET)/completions/stepupctl.fish $(DESTDIR)$(FISHCOMPDIR)/stepupctl.fish

# Leaves /etc/stepup (policy, host key) and /var/lib/stepup (factors, counters) alone:
# removing a program must not destroy enrolments. Delete them by hand if you mean it.
uninstall:
	rm -f $(DESTDIR)$(PAMDIR)/pam_stepup.so $(DESTDIR)$(SBINDIR)/stepupd $(DESTDIR)$(BINDIR)/stepupctl
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/stepupd.service $(DESTDIR)$(SYSTEMDUNITDIR)/stepupd.socket
	rm -f $(DESTDIR)$(DBUSPOLICYDIR)/org.stepup.Stepupd1.conf $(DESTDIR)$(PAMCONFIGSDIR)/stepup
	rm -f $(DESTDIR)$(MANDIR)/man1/stepupctl.1 $(DESTDIR)$(MANDIR)/man5/stepupd.toml.5
	rm -f $(DESTDIR)$(MANDIR)/man8/stepupd.8 $(DESTDIR)$(MANDIR)/man8/pam_stepup.8
	rm -f $(DESTDIR)$(BASHCOMPDIR)/stepupctl $(DESTDIR)$(ZSHCOMPDIR)/_stepupctl $(DESTDIR)$(FISHCOMPDIR)/stepupctl.fish

deb:
	packaging/deb/build-deb

# The benchmark suite (docs/benchmarks.md): release build, needs root.
.PHONY: bench
bench:
	scripts/bench
