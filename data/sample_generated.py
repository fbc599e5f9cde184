"""The generated part of the sample: web junk, and re-crawled copies of real documents.

Junk is what heuristic and quality filters must remove (cookie banners, menus, keyword spam, lorem
ipsum, "enable JavaScript" pages, gibberish). Re-crawls are real documents seen a second time under a
URL that normalizes to the first one, verbatim or lightly edited, for exact, near and URL dedup.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable
from random import Random

from sample_doc import Doc

SPAM_WORDS = ("cheap", "best", "deal", "online", "free", "shop", "casino", "loan", "pills", "crypto", "bonus",
              "discount", "offer", "vip", "win", "sale", "outlet", "replica", "fast", "guaranteed")
SITE_WORDS = ("news", "daily", "market", "hub", "world", "zone", "city", "portal", "blog", "store", "media", "info")
LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip "
         "ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse cillum").split()
NAV_ITEMS = ("Home", "About us", "Products", "Services", "Blog", "News", "Contact", "Careers", "Login", "Sign up",
             "FAQ", "Support", "Privacy Policy", "Terms of Use", "Sitemap", "Shop", "Cart", "My account")
JAVASCRIPT_NOTICES = (
    "You need to enable JavaScript to run this app.",
    "JavaScript is disabled in your browser. Please enable JavaScript to continue.",
    "This page requires JavaScript. Please turn on JavaScript in your browser settings and reload the page.",
    "Loading...\nPlease enable JavaScript and cookies to continue.\nChecking your browser before accessing the site.",
)
RECRAWL_BANNERS = ("Skip to main content", "Share this page: Twitter | Facebook | Email", "Last updated: {date}")
GIBBERISH_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789#@$%&*"


def cookie_banner(rng: Random) -> str:
    who = rng.choice(["This website", "We and our partners", "Our site", "This site"])
    button = rng.choice(["Accept all", "I agree", "OK", "Got it"])
    return (f"{who} uses cookies to improve your experience, analyse traffic and show personalised ads. "
            f"By clicking \"{button}\" you consent to the use of cookies. You can change your preferences at any "
            f"time in Cookie Settings.\n{button} | Reject | Manage preferences | Privacy Policy")


def navigation_menu(rng: Random) -> str:
    items = rng.sample(NAV_ITEMS, rng.randint(6, len(NAV_ITEMS)))
    separator = rng.choice(["\n", " | ", " > ", "\n• "])
    return separator.join(items) + f"\n\n© {rng.randint(2009, 2026)} All rights reserved."


def keyword_spam(rng: Random) -> str:
    keywords = rng.sample(SPAM_WORDS, 4)
    lines = [" ".join(rng.choices(keywords, k=rng.randint(5, 12))) for _ in range(rng.randint(3, 10))]
    lines.append(rng.choice(["BUY NOW!!!", "Buy now and save 90%!!!", "CLICK HERE to claim your bonus!!!",
                             "Limited offer - order today!!!"]))
    return "\n".join(lines)


def lorem_ipsum(rng: Random) -> str:
    paragraphs = [" ".join(rng.choices(LOREM, k=rng.randint(30, 120))).capitalize() + "."
                  for _ in range(rng.randint(1, 4))]
    return "\n\n".join(paragraphs)


def javascript_notice(rng: Random) -> str:
    return rng.choice(JAVASCRIPT_NOTICES)


def gibberish(rng: Random) -> str:
    return " ".join("".join(rng.choices(GIBBERISH_ALPHABET, k=rng.randint(2, 14))) for _ in range(rng.randint(20, 200)))


JUNK_MAKERS: tuple[Callable[[Random], str], ...] = (cookie_banner, navigation_menu, keyword_spam, lorem_ipsum,
                                                     javascript_notice, gibberish)


def generated_junk(rng: Random, count: int) -> list[Doc]:
    """`count` junk pages, the makers in turn, on made-up hosts under the reserved .example TLD.

    The page number `i` is in every path, so junk URLs are unique and only re-crawls collide.
    """
    docs = []
    for i in range(count):
        maker = JUNK_MAKERS[i % len(JUNK_MAKERS)]
        host = f"www.{rng.choice(SITE_WORDS)}-{rng.choice(SITE_WORDS)}{rng.randint(1, 99)}.example"
        path = rng.choice([f"p/{i}", f"index.php?page={i}", f"{rng.choice(SPAM_WORDS)}-{rng.choice(SPAM_WORDS)}-{i}"])
        docs.append(Doc(maker(rng), source="generated", url=f"https://{host}/{path}", license="CC0-1.0",
                        lang="und" if maker is gibberish else "en", kind="junk", package="make_sample.py",
                        version="", path=maker.__name__))
    return docs


def url_variant(url: str, rng: Random) -> str:
    """The same page under a URL that `normalized_url` maps back: scheme, trailing slash, utm_*, host case."""
    parts = urllib.parse.urlsplit(url)
    scheme, host, path, query = parts.scheme, parts.netloc, parts.path, parts.query
    changes = rng.sample(["scheme", "slash", "utm", "host"], rng.randint(1, 3))
    if "scheme" in changes:
        scheme = "http" if scheme == "https" else "https"
    if "slash" in changes:
        path = path[:-1] if path.endswith("/") else path + "/"
    if "host" in changes:
        host = host.upper() if rng.random() < 0.5 else host.capitalize()
    if "utm" in changes:
        tracking = f"utm_source={rng.choice(['twitter', 'newsletter', 'google'])}&utm_medium=social"
        query = f"{query}&{tracking}" if query else tracking
    return urllib.parse.urlunsplit((scheme, host, path, query, parts.fragment))


def normalized_url(url: str) -> str:
    """https, lower-case host, no trailing slash, no utm_* parameters, no fragment: what URL dedup compares."""
    parts = urllib.parse.urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("utm_"))
    return urllib.parse.urlunsplit(("https", parts.netloc.lower(), parts.path.rstrip("/"), query, ""))


def recrawl_edit(text: str, rng: Random) -> str:
    """A near-duplicate as a second crawl sees it: a banner line on top and about one word in 200 gone."""
    words = text.split(" ")
    for _ in range(max(1, len(words) // 200)):
        del words[rng.randrange(len(words))]
    banner = rng.choice(RECRAWL_BANNERS).format(date=f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
    return f"{banner}\n\n{' '.join(words)}"


def recrawls(docs: list[Doc], rng: Random, exact: int, near: int, min_chars: int = 500) -> list[Doc]:
    """Second copies of real prose under a variant URL: `exact` verbatim, `near` lightly edited."""
    originals = rng.sample([d for d in docs if d.kind == "prose" and len(d.text) >= min_chars], exact + near)
    copies = []
    for n, doc in enumerate(originals):
        text, kind = (doc.text, "exact_dup") if n < exact else (recrawl_edit(doc.text, rng), "near_dup")
        copies.append(dataclasses.replace(doc, text=text, url=url_variant(doc.url, rng), kind=kind, dup_of=doc))
    return copies
