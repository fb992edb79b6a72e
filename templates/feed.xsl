<?xml version="1.0" encoding="utf-8"?>
{# /feed.xsl: what a browser shows an Atom or RSS feed of feedbot's as (the feeds
   name it in <?xml-stylesheet?>; readers ignore it). A page in the site's style:
   the feed's title, the URL to paste into a reader, the entries' titles, dates
   and topics, and the paging links. Only text is copied out of the feed, never
   markup, except titles that the feed itself says are escaped HTML (Atom
   type="html", RSS titles): those are written unescaped once, which gives back
   the plain text feedbot escaped when it wrote them. Rendered by Jinja2 with
   the base URL of the links; braces here are XSLT's, not Jinja's. #}
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:a="http://www.w3.org/2005/Atom"
    exclude-result-prefixes="a">
<xsl:output method="html" encoding="utf-8" doctype-system="about:legacy-compat" indent="yes"/>

<xsl:template match="/">
<xsl:variable name="title">
  <xsl:choose>
    <xsl:when test="a:feed"><xsl:value-of select="a:feed/a:title"/></xsl:when>
    <xsl:otherwise><xsl:value-of select="rss/channel/title"/></xsl:otherwise>
  </xsl:choose>
</xsl:variable>
<xsl:variable name="self" select="(a:feed/a:link[@rel='self'] | rss/channel/a:link[@rel='self'])[1]/@href"/>
<xsl:variable name="page" select="(a:feed/a:link[@rel='alternate'] | rss/channel/link)[1]"/>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title><xsl:value-of select="$title"/> (feed) · feedbot</title>
<link rel="stylesheet" href="{{ base }}/site.css"/>
</head>
<body>
<header>
<nav aria-label="Site"><a href="{{ base }}/">Latest</a><xsl:text> </xsl:text><a href="{{ base }}/topics">Topics</a><xsl:text> </xsl:text><a href="{{ base }}/topics.opml">OPML</a></nav>
</header>
<main>
<h1><xsl:value-of select="$title"/></h1>
<p><xsl:value-of select="a:feed/a:subtitle | rss/channel/description"/></p>
<section class="subscribe" aria-labelledby="subscribe-heading">
<h2 id="subscribe-heading">This is a feed</h2>
<p id="subscribe">Paste this URL into your feed reader to follow it: <code><xsl:value-of select="$self"/></code></p>
<p>Or read the same as a page: <a href="{$page/@href | $page[not(@href)]}"><xsl:value-of select="$title"/></a></p>
</section>
<h2>Entries</h2>
<ol class="events">
<xsl:apply-templates select="a:feed/a:entry | rss/channel/item"/>
</ol>
<nav class="pager" aria-label="Pages">
<xsl:for-each select="(a:feed | rss/channel)/a:link[@rel='previous']"><a href="{@href}" rel="prev">← Newer</a></xsl:for-each>
<xsl:for-each select="(a:feed | rss/channel)/a:link[@rel='next']"><a href="{@href}" rel="next">Older →</a></xsl:for-each>
</nav>
</main>
<footer>Served by feedbot. Feed readers read this document as a feed; browsers show it through /feed.xsl.</footer>
</body>
</html>
</xsl:template>

<xsl:template match="a:entry">
<li><article>
<div class="meta"><time datetime="{substring(a:published, 1, 10)}"><xsl:value-of select="substring(a:published, 1, 10)"/></time></div>
<h3><a href="{a:link[@rel='alternate']/@href}"><xsl:call-template name="title"><xsl:with-param name="node" select="a:title"/><xsl:with-param name="html" select="a:title/@type = 'html'"/></xsl:call-template></a></h3>
<xsl:if test="a:category">
<div class="topics meta">Topics: <xsl:for-each select="a:category"><a href="{{ base }}/topics/{@term}"><xsl:value-of select="@label"/></a></xsl:for-each></div>
</xsl:if>
</article></li>
</xsl:template>

<xsl:template match="item">
<li><article>
<div class="meta"><xsl:value-of select="pubDate"/></div>
<h3><a href="{link}"><xsl:call-template name="title"><xsl:with-param name="node" select="title"/><xsl:with-param name="html" select="true()"/></xsl:call-template></a></h3>
<xsl:if test="category">
<div class="topics meta">Topics: <xsl:for-each select="category"><span><xsl:value-of select="."/></span><xsl:if test="position() != last()">, </xsl:if></xsl:for-each></div>
</xsl:if>
</article></li>
</xsl:template>

<xsl:template name="title">
<xsl:param name="node"/>
<xsl:param name="html"/>
<xsl:choose>
  <xsl:when test="$html"><xsl:value-of select="$node" disable-output-escaping="yes"/></xsl:when>
  <xsl:otherwise><xsl:value-of select="$node"/></xsl:otherwise>
</xsl:choose>
</xsl:template>
</xsl:stylesheet>
