"""How a client installs a tenant's CA: the one text that the onboarding page
(``arcus.serve.onboard``) shows and ``arcus ca export`` prints.

Steps are short and name the file to use: ``ca.pem`` (PEM) or ``ca.der`` (DER; what Windows,
Android and iOS install most easily by opening it). Each platform is a title and its steps;
:func:`install_text` renders them as plain text, the page renders the same tuples as HTML.
"""

from __future__ import annotations

ONBOARD_HOST = "arcus.invalid"
"""The name a client browses to, through the proxy, for its tenant's CA: ``http://arcus.invalid/``.
Under ``.invalid`` (RFC 6761 6.4): no such name can ever resolve or be registered, so the page can
never shadow a real site, and a client that does not use the proxy gets a plain DNS failure."""

INSTALL_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Windows", (
        "Download ca.der and open it; choose Install Certificate.",
        "Store location: Current User (or Local Machine for every user); then Place all certificates "
        "in the following store: Trusted Root Certification Authorities.",
        "Or, as administrator: certutil -addstore -f Root ca.der",
    )),
    ("macOS", (
        "Download ca.pem and open it: Keychain Access adds it to the login keychain.",
        "Open the certificate in Keychain Access, expand Trust, set When using this certificate: Always Trust.",
        "Or: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ca.pem",
    )),
    ("Linux", (
        "Debian, Ubuntu: sudo cp ca.pem /usr/local/share/ca-certificates/arcus.crt && sudo update-ca-certificates",
        "Fedora, RHEL: sudo cp ca.pem /etc/pki/ca-trust/source/anchors/arcus.pem && sudo update-ca-trust",
        "Programs with their own store (curl --cacert, Python's certifi, Java's keytool) need it there too.",
    )),
    ("Firefox", (
        "Firefox keeps its own store: Settings, Privacy & Security, Certificates, View Certificates.",
        "Authorities, Import, choose ca.pem, tick Trust this CA to identify websites.",
    )),
    ("Android", (
        "Download ca.der; Settings, Security, Encryption & credentials, Install a certificate, CA certificate.",
        "Apps trust user-installed CAs only if they opt in (Android 7 and later); Chrome does.",
    )),
    ("iOS", (
        "Open http://" + ONBOARD_HOST + "/ca.der in Safari and allow the profile download.",
        "Settings, General, VPN & Device Management: install the downloaded profile.",
        "Settings, General, About, Certificate Trust Settings: turn on full trust for the Arcus CA.",
    )),
)


def install_text(source: str) -> str:
    """The install steps as plain text; ``source`` says where ca.pem/ca.der come from."""
    lines = [f"Install this CA in the clients' trust stores ({source}):"]
    for title, steps in INSTALL_STEPS:
        lines.append(f"  {title}:")
        lines.extend(f"    - {step}" for step in steps)
    return "\n".join(lines) + "\n"
