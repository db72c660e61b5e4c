//! `#[limit]` and `#[exempt]`, the attributes of `limiter-actix` (which re-exports them; depend
//! on that crate, not this one).
//!
//! This crate only parses and checks: rate strings are parsed at compile time with
//! `limiter-core`'s parser, and every mistake is a compile error pointing at the bad token.
//! The expansion calls into `limiter_actix::__private`, which holds all the logic.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ItemFn, LitBool, LitInt, LitStr, Path, Token};

/// Rate-limits a handler. `limiter_actix` re-exports this attribute and documents its options.
#[proc_macro_attribute]
pub fn limit(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Own::Limit(args.into()), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Exempts a handler from the default and/or application limits. `limiter_actix` re-exports
/// this attribute and documents it.
#[proc_macro_attribute]
pub fn exempt(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Own::Exempt(args.into()), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

enum Own {
    Limit(TokenStream2),
    Exempt(TokenStream2),
}

const OPTIONS: &[&str] = &[
    "key",
    "cost",
    "methods",
    "per_method",
    "scope",
    "shared",
    "exempt_when",
    "deduct_when",
    "override_defaults",
    "error_message",
    "on_breach",
    "dynamic",
    "strategy",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

const ROUTE_MACROS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "head", "options", "connect", "trace", "route",
    "routes",
];

/// One `#[limit(...)]`.
#[derive(Default)]
struct LimitArgs {
    rates: Option<(LitStr, Vec<limiter_core::Rate>)>,
    key: Option<Path>,
    cost: Option<CostArg>,
    methods: Option<Vec<String>>,
    per_method: bool,
    scope: Option<LitStr>,
    shared: Option<LitStr>,
    exempt_when: Option<Path>,
    deduct_when: Option<Path>,
    override_defaults: Option<bool>,
    error_message: Option<LitStr>,
    on_breach: Option<Path>,
    dynamic: Option<Path>,
    strategy: Option<limiter_core::Strategy>,
}

enum CostArg {
    Fixed(u64),
    Function(Path),
}

/// A value after `name =`.
enum Value {
    Str(LitStr),
    Int(LitInt),
    Bool(LitBool),
    Path(Path),
    /// The items, and the brackets' span.
    List(Vec<(String, Span)>, Span),
}

impl Value {
    fn span(&self) -> Span {
        match self {
            Value::Str(s) => s.span(),
            Value::Int(i) => i.span(),
            Value::Bool(b) => b.span(),
            Value::Path(p) => p.span(),
            Value::List(items, brackets) => items.first().map_or(*brackets, |(_, s)| *s),
        }
    }
}

impl Parse for Value {
    fn parse(input: ParseStream) -> syn::Result<Value> {
        if input.peek(syn::token::Bracket) {
            let content;
            let brackets = syn::bracketed!(content in input);
            let mut items = Vec::new();
            while !content.is_empty() {
                if content.peek(LitStr) {
                    let s: LitStr = content.parse()?;
                    items.push((s.value(), s.span()));
                } else {
                    let id: Ident = content.call(syn::ext::IdentExt::parse_any)?;
                    items.push((id.to_string(), id.span()));
                }
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
            return Ok(Value::List(items, brackets.span.join()));
        }
        let lookahead = input.lookahead1();
        if lookahead.peek(LitStr) {
            input.parse().map(Value::Str)
        } else if lookahead.peek(LitInt) {
            input.parse().map(Value::Int)
        } else if lookahead.peek(LitBool) {
            input.parse().map(Value::Bool)
        } else if input.peek(Token![Self]) {
            // The option's function is called from code generated beside the handler, where
            // `Self` may name nothing.
            Err(syn::Error::new(
                input.span(),
                "`Self` cannot name an option's function: name the type instead \
                 (`key = Api::key`, not `key = Self::key`)",
            ))
        } else if lookahead.peek(Ident)
            || lookahead.peek(Token![::])
            || lookahead.peek(Token![crate])
            || lookahead.peek(Token![self])
            || lookahead.peek(Token![super])
        {
            input.parse().map(Value::Path)
        } else {
            Err(lookahead.error())
        }
    }
}

struct RawOption {
    name: Ident,
    value: Option<Value>,
}

struct RawLimit {
    rates: Option<LitStr>,
    options: Vec<RawOption>,
}

impl Parse for RawLimit {
    fn parse(input: ParseStream) -> syn::Result<RawLimit> {
        let mut raw = RawLimit {
            rates: None,
            options: Vec::new(),
        };
        if input.peek(LitStr) {
            raw.rates = Some(input.parse()?);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        while !input.is_empty() {
            if input.peek(LitStr) {
                let extra: LitStr = input.parse()?;
                let message = if raw.rates.is_some() {
                    "one rate string per #[limit]: write several rates in one string \
                     (\"100 per hour, 5000 per day\") or stack several #[limit] attributes"
                } else {
                    "the rate string goes first, before the options: \
                     #[limit(\"10 per minute\", key = ...)]"
                };
                return Err(syn::Error::new(extra.span(), message));
            }
            let name: Ident = input.call(syn::ext::IdentExt::parse_any)?;
            let value = if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                Some(input.parse()?)
            } else {
                None
            };
            raw.options.push(RawOption { name, value });
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(raw)
    }
}

fn error(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

/// The closest candidate within two edits, or one the word starts with.
fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    limiter_core::suggest::closest(word, candidates)
}

fn did_you_mean(found: Option<&str>) -> String {
    found.map_or_else(String::new, |s| format!("; did you mean `{s}`?"))
}

/// Points at the bad part of a literal where the compiler allows it, else at the literal.
fn literal_span(lit: &LitStr, range: std::ops::Range<usize>) -> Span {
    // +1 skips the opening quote; sub-spans exist only on nightly compilers.
    lit.token()
        .subspan(range.start + 1..range.end.max(range.start + 1) + 1)
        .unwrap_or_else(|| lit.span())
}

fn parse_limit(tokens: TokenStream2) -> syn::Result<LimitArgs> {
    let raw: RawLimit = syn::parse2(tokens)?;
    let mut args = LimitArgs::default();
    if let Some(lit) = raw.rates {
        let rates = limiter_core::parse_rates(&lit.value()).map_err(|e| {
            error(
                literal_span(&lit, e.span()),
                format!("invalid rate string: {e}"),
            )
        })?;
        args.rates = Some((lit, rates));
    }
    let mut seen: Vec<String> = Vec::new();
    for RawOption { name, value } in raw.options {
        let key = name.to_string();
        if !OPTIONS.contains(&key.as_str()) {
            return Err(error(
                name.span(),
                format!(
                    "unknown #[limit] option `{key}`{} (options: {})",
                    did_you_mean(suggest(&key, OPTIONS)),
                    OPTIONS.join(", ")
                ),
            ));
        }
        if seen.contains(&key) {
            return Err(error(name.span(), format!("`{key}` is given twice")));
        }
        seen.push(key.clone());
        let value_span = value.as_ref().map_or(name.span(), Value::span);
        let expect = |what: &str| error(value_span, format!("`{key}` expects {what}"));
        match (key.as_str(), value) {
            ("per_method", None) => args.per_method = true,
            ("per_method", Some(Value::Bool(b))) => args.per_method = b.value,
            ("override_defaults", Some(Value::Bool(b))) => args.override_defaults = Some(b.value),
            ("key", Some(Value::Path(p))) => args.key = Some(p),
            ("exempt_when", Some(Value::Path(p))) => args.exempt_when = Some(p),
            ("deduct_when", Some(Value::Path(p))) => args.deduct_when = Some(p),
            ("on_breach", Some(Value::Path(p))) => args.on_breach = Some(p),
            ("dynamic", Some(Value::Path(p))) => args.dynamic = Some(p),
            ("cost", Some(Value::Path(p))) => args.cost = Some(CostArg::Function(p)),
            ("cost", Some(Value::Int(i))) => {
                let n: u64 = i.base10_parse().map_err(|_| {
                    error(
                        i.span(),
                        "`cost` expects a whole number from 1 to 18446744073709551615, \
                         or a path to a function",
                    )
                })?;
                if n == 0 {
                    return Err(error(
                        i.span(),
                        "`cost` must be at least 1 (use exempt_when to skip a limit)",
                    ));
                }
                args.cost = Some(CostArg::Fixed(n));
            }
            ("scope", Some(Value::Str(s))) => args.scope = Some(s),
            ("shared", Some(Value::Str(s))) => args.shared = Some(s),
            ("error_message", Some(Value::Str(s))) => args.error_message = Some(s),
            ("strategy", Some(Value::Str(s))) => {
                let strategy = s
                    .value()
                    .parse::<limiter_core::Strategy>()
                    .map_err(|e| error(s.span(), e))?;
                args.strategy = Some(strategy);
            }
            ("methods", Some(Value::List(items, _))) => {
                let mut methods = Vec::new();
                for (method, span) in items {
                    let upper = method.to_ascii_uppercase();
                    if !METHODS.contains(&upper.as_str()) {
                        return Err(error(
                            span,
                            format!(
                                "unknown HTTP method `{method}`{} (methods: {})",
                                did_you_mean(suggest(&upper, METHODS)),
                                METHODS.join(", ")
                            ),
                        ));
                    }
                    methods.push(upper);
                }
                if methods.is_empty() {
                    return Err(expect("at least one method, like methods = [GET, POST]"));
                }
                args.methods = Some(methods);
            }
            ("per_method" | "override_defaults", _) => return Err(expect("true or false")),
            ("key" | "exempt_when" | "deduct_when" | "on_breach" | "dynamic", _) => {
                return Err(expect(&format!(
                    "a path to a function, like {key} = my_{key}_fn"
                )));
            }
            ("cost", _) => {
                return Err(expect(
                    "a whole number or a path to a function, like cost = 2",
                ));
            }
            ("methods", _) => return Err(expect("a list, like methods = [GET, POST]")),
            ("strategy", _) => {
                return Err(expect("a strategy name, like strategy = \"moving-window\""));
            }
            (_, _) => return Err(expect("a string literal")),
        }
    }
    match (&args.rates, &args.dynamic) {
        (None, None) => {
            return Err(error(
                Span::call_site(),
                "#[limit] needs a rate string, like #[limit(\"1 per minute\")], or `dynamic = fn`",
            ));
        }
        (Some((lit, _)), Some(_)) => {
            return Err(error(
                lit.span(),
                "give either a rate string or `dynamic`, not both",
            ));
        }
        _ => {}
    }
    if let (Some(_), Some(shared)) = (&args.scope, &args.shared) {
        return Err(error(
            shared.span(),
            "give either `scope` or `shared`, not both",
        ));
    }
    Ok(args)
}

#[derive(Default)]
struct ExemptFlags {
    application: bool,
    defaults: bool,
}

fn parse_exempt(tokens: TokenStream2) -> syn::Result<ExemptFlags> {
    if tokens.is_empty() {
        return Ok(ExemptFlags {
            application: true,
            defaults: true,
        });
    }
    let names = Punctuated::<Ident, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut flags = ExemptFlags::default();
    for name in names {
        match name.to_string().as_str() {
            "application" => flags.application = true,
            "defaults" | "default" => flags.defaults = true,
            other => {
                return Err(error(
                    name.span(),
                    format!(
                        "unknown exemption `{other}`{} (write #[exempt], #[exempt(application)] or #[exempt(defaults)])",
                        did_you_mean(suggest(other, &["application", "defaults"]))
                    ),
                ));
            }
        }
    }
    Ok(flags)
}

use syn::parse::Parser;

fn last_segment(attr: &Attribute) -> Option<String> {
    attr.path().segments.last().map(|s| s.ident.to_string())
}

fn attr_tokens(attr: &Attribute) -> syn::Result<TokenStream2> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(TokenStream2::new()),
        syn::Meta::List(list) => Ok(list.tokens.clone()),
        syn::Meta::NameValue(nv) => Err(error(
            nv.span(),
            "write #[limit(\"...\")] or #[exempt(...)]",
        )),
    }
}

/// What decides a `#[limit]`'s bucket besides its rates and methods: its options but
/// `methods`, each as written, in name order. Two limits that agree here charge one bucket
/// for a rate both name, on a request both apply to.
fn bucket_options(tokens: TokenStream2) -> Vec<String> {
    let mut tokens = tokens.into_iter().peekable();
    if matches!(tokens.peek(), Some(proc_macro2::TokenTree::Literal(_))) {
        tokens.next();
    }
    let mut options = Vec::new();
    let mut option = TokenStream2::new();
    for token in tokens.chain([proc_macro2::TokenTree::Punct(proc_macro2::Punct::new(
        ',',
        proc_macro2::Spacing::Alone,
    ))]) {
        match token {
            proc_macro2::TokenTree::Punct(p) if p.as_char() == ',' => {
                let text = std::mem::take(&mut option).to_string();
                if !text.is_empty() && !text.starts_with("methods") {
                    options.push(text);
                }
            }
            token => option.extend([token]),
        }
    }
    options.sort();
    options
}

/// Whether some request is under both method lists (none: every method).
fn methods_overlap(a: Option<&[String]>, b: Option<&[String]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|method| b.contains(method)),
        _ => true,
    }
}

fn expand(own: Own, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut func: ItemFn = syn::parse2(item).map_err(|e| {
        error(
            e.span(),
            "#[limit] and #[exempt] go on an `async fn` request handler",
        )
    })?;
    let mut groups: Vec<LimitArgs> = Vec::new();
    // Each limit's bucket options, beside `groups`: a rate in two limits with the same ones,
    // on a request both apply to, is one bucket charged twice (half the rate), never meant.
    let mut options_of_groups = Vec::new();
    let mut exempt = ExemptFlags::default();
    let mut add = |own: Own| -> syn::Result<()> {
        match own {
            Own::Limit(tokens) => {
                let first_span = tokens
                    .clone()
                    .into_iter()
                    .next()
                    .map_or_else(Span::call_site, |t| t.span());
                let options = bucket_options(tokens.clone());
                let args = parse_limit(tokens)?;
                for (earlier, earlier_options) in groups.iter().zip(&options_of_groups) {
                    if *earlier_options != options
                        || !methods_overlap(earlier.methods.as_deref(), args.methods.as_deref())
                    {
                        continue;
                    }
                    let repeat = match (&earlier.rates, &args.rates) {
                        (Some((_, before)), Some((lit, now))) => now
                            .iter()
                            .find(|rate| before.contains(rate))
                            .map(|rate| (lit.span(), format!("rate \"{rate}\" is"))),
                        // Both dynamic, with the same function.
                        (None, None) => Some((first_span, "this limit is".to_owned())),
                        _ => None,
                    };
                    if let Some((span, what)) = repeat {
                        return Err(error(
                            span,
                            format!(
                                "{what} also in another #[limit] with the same options on this \
                                 handler: both would charge one bucket, counting each request \
                                 twice; remove one"
                            ),
                        ));
                    }
                }
                groups.push(args);
                options_of_groups.push(options);
            }
            Own::Exempt(tokens) => {
                let flags = parse_exempt(tokens)?;
                exempt.application |= flags.application;
                exempt.defaults |= flags.defaults;
            }
        }
        Ok(())
    };
    add(own)?;
    // Stacked attributes below this one merge into one decision.
    let mut wrapper_attrs = Vec::new();
    let mut inner_attrs = Vec::new();
    for attr in std::mem::take(&mut func.attrs) {
        match last_segment(&attr).as_deref() {
            Some("limit") => add(Own::Limit(attr_tokens(&attr)?))?,
            Some("exempt") => add(Own::Exempt(attr_tokens(&attr)?))?,
            // What describes the handler as callers see it stays on the wrapper.
            Some(name)
                if ROUTE_MACROS.contains(&name) || matches!(name, "doc" | "cfg" | "deprecated") =>
            {
                wrapper_attrs.push(attr)
            }
            // Lint levels hold for both: the body's lints are the inner function's, an unused
            // handler's the wrapper's. (`expect` stays inside: unmet on the wrapper, it warns.)
            Some("allow" | "warn" | "deny" | "forbid") => {
                wrapper_attrs.push(attr.clone());
                inner_attrs.push(attr);
            }
            _ => inner_attrs.push(attr),
        }
    }
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(error(
            sig.fn_token.span(),
            "#[limit] and #[exempt] go on an `async fn` request handler",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(error(
            sig.generics.span(),
            "#[limit] and #[exempt] do not support generic handlers",
        ));
    }
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(error(
                    r.span(),
                    "#[limit] and #[exempt] go on free functions, not methods",
                ));
            }
            FnArg::Typed(pat) => types.push((*pat.ty).clone()),
        }
    }
    let vars: Vec<Ident> = (0..types.len())
        .map(|i| format_ident!("__limiter_arg{}", i))
        .collect();
    let name = &sig.ident;
    let name_str = name.to_string();
    let vis = &func.vis;
    let krate = quote!(::limiter_actix::__private);

    let mut shims = Vec::new();
    // The shims' parameters, named where the user's function names cannot reach them: a user
    // function called `req` or `breach` stays the one called, and a constant cannot turn a
    // parameter into a pattern. They are located at the option's function, as is the call of
    // it: a function of the wrong type is an error there, not on the whole attribute.
    let params = |path: &Path| {
        [
            "__limiter_req",
            "__limiter_out",
            "__limiter_res",
            "__limiter_breach",
        ]
        .map(|name| Ident::new(name, Span::mixed_site().located_at(path.span())))
    };
    let mut group_tokens = Vec::new();
    for (g, args) in groups.iter().enumerate() {
        let mut fields = Vec::new();
        if let Some((lit, rates)) = &args.rates {
            let specs = rates.iter().map(|rate| {
                let (amount, multiples) = (rate.amount(), rate.multiples());
                let unit = Ident::new(&format!("{:?}", rate.unit()), lit.span());
                quote_spanned!(lit.span()=> #krate::RateSpec { amount: #amount, multiples: #multiples, unit: #krate::Unit::#unit })
            });
            fields.push(quote!(rates: &[#(#specs),*]));
        }
        if let Some(path) = &args.dynamic {
            let shim = format_ident!("__limiter_dynamic_{}", g);
            let [req, ..] = params(path);
            shims.push(quote_spanned! {path.span()=>
                fn #shim(#req: &#krate::HttpRequest) -> ::core::option::Option<::std::borrow::Cow<'_, str>> {
                    #krate::IntoRateText::into_rate_text(#path(#req))
                }
            });
            fields.push(quote!(dynamic: ::core::option::Option::Some(#shim as #krate::DynamicFn)));
        }
        if let Some(path) = &args.key {
            let shim = format_ident!("__limiter_key_{}", g);
            let [req, out, ..] = params(path);
            shims.push(quote_spanned! {path.span()=>
                fn #shim(#req: &#krate::HttpRequest, #out: &mut ::std::string::String) -> bool {
                    #krate::IntoClientKey::write_key(#path(#req), #out)
                }
            });
            fields.push(quote!(key: ::core::option::Option::Some(#shim as #krate::KeyFn)));
        }
        match &args.cost {
            None => {}
            Some(CostArg::Fixed(n)) => fields.push(quote!(cost: #krate::Cost::Fixed(#n))),
            Some(CostArg::Function(path)) => {
                let shim = format_ident!("__limiter_cost_{}", g);
                let [req, ..] = params(path);
                shims.push(quote_spanned! {path.span()=>
                    fn #shim(#req: &#krate::HttpRequest) -> u64 {
                        #krate::IntoCost::into_cost(#path(#req))
                    }
                });
                fields.push(
                    quote!(cost: #krate::Cost::Dynamic(#shim as fn(&#krate::HttpRequest) -> u64)),
                );
            }
        }
        if let Some(methods) = &args.methods {
            fields.push(quote!(methods: ::core::option::Option::Some(&[#(#methods),*])));
        }
        if args.per_method {
            fields.push(quote!(per_method: true));
        }
        if let Some(scope) = &args.scope {
            fields.push(quote!(scope: #krate::Scope::Named(#scope)));
        }
        if let Some(shared) = &args.shared {
            fields.push(quote!(scope: #krate::Scope::Shared(#shared)));
        }
        if let Some(path) = &args.exempt_when {
            let shim = format_ident!("__limiter_exempt_when_{}", g);
            let [req, ..] = params(path);
            shims.push(quote_spanned! {path.span()=>
                fn #shim(#req: &#krate::HttpRequest) -> bool {
                    #path(#req)
                }
            });
            fields.push(quote!(exempt_when: ::core::option::Option::Some(#shim as fn(&#krate::HttpRequest) -> bool)));
        }
        if let Some(path) = &args.deduct_when {
            let shim = format_ident!("__limiter_deduct_when_{}", g);
            let [.., res, _] = params(path);
            shims.push(quote_spanned! {path.span()=>
                fn #shim(#res: &#krate::HttpResponse) -> bool {
                    #path(#res)
                }
            });
            fields.push(quote!(deduct_when: ::core::option::Option::Some(#shim as fn(&#krate::HttpResponse) -> bool)));
        }
        if let Some(flag) = args.override_defaults {
            fields.push(quote!(override_defaults: #flag));
        }
        if let Some(message) = &args.error_message {
            fields.push(quote!(error_message: ::core::option::Option::Some(#message)));
        }
        if let Some(path) = &args.on_breach {
            let shim = format_ident!("__limiter_on_breach_{}", g);
            let [req, .., breach] = params(path);
            shims.push(quote_spanned! {path.span()=>
                fn #shim(#req: &#krate::HttpRequest, #breach: &::limiter_actix::Breach) -> #krate::HttpResponse {
                    #krate::respond(#path(#req, #breach), #req)
                }
            });
            fields
                .push(quote!(on_breach: ::core::option::Option::Some(#shim as #krate::OnBreachFn)));
        }
        if let Some(strategy) = &args.strategy {
            let variant = Ident::new(&format!("{:?}", strategy), Span::call_site());
            fields.push(quote!(strategy: ::core::option::Option::Some(#krate::Strategy::#variant)));
        }
        group_tokens.push(quote!(#krate::Group { #(#fields,)* ..#krate::Group::DEFAULT }));
    }
    let (exempt_app, exempt_defaults) = (exempt.application, exempt.defaults);

    let mut inner_sig = func.sig.clone();
    let block = &func.block;
    // The handler's own body runs as a function nested in the wrapper, except where it names
    // `Self` (an associated function, registered by hand), which a nested function cannot
    // see: there it is an associated function beside the wrapper, called through `Self`.
    let (inner, beside, call) = if mentions_self(sig, block) {
        let inner_name = format_ident!("__limiter_handler_{}", name);
        inner_sig.ident = inner_name.clone();
        let item = quote! {
            #(#inner_attrs)*
            #[doc(hidden)]
            #inner_sig #block
        };
        (quote!(), item, quote!(Self::#inner_name))
    } else {
        // Under the handler's own name (shadowing the wrapper inside it), which the attributes
        // left on it may use: `#[tracing::instrument]` names its span after it.
        let item = quote! {
            #(#inner_attrs)*
            #inner_sig #block
        };
        (item, quote!(), quote!(#name))
    };
    let types = types.iter();
    // Bindings of the generated code, named apart from the user's items: a constant or unit
    // struct called `args` or `error` in scope would turn them into patterns (hygiene does not
    // keep a pattern from resolving to an item).
    let [args_var, error_var] =
        ["__limiter_args", "__limiter_error"].map(|name| Ident::new(name, Span::mixed_site()));
    Ok(quote! {
        #beside
        #(#wrapper_attrs)*
        #vis async fn #name(__limiter_parts: #krate::Parts) -> #krate::HttpResponse {
            #inner
            #(#shims)*
            fn __limiter_marker() {}
            static __LIMITER_ROUTE: #krate::Route = #krate::Route::new(
                ::core::concat!(::core::module_path!(), "::", #name_str),
                || ::core::any::type_name_of_val(&__limiter_marker),
                &[#(#group_tokens),*],
                #krate::Exempt { application: #exempt_app, defaults: #exempt_defaults },
            );
            #krate::run(
                &__LIMITER_ROUTE,
                __limiter_parts,
                |__limiter_req: #krate::HttpRequest, mut __limiter_payload: #krate::DevPayload| async move {
                    let (#(#vars,)*) = match <(#(#types,)*) as #krate::FromRequest>::from_request(
                        &__limiter_req,
                        &mut __limiter_payload,
                    )
                    .await
                    {
                        ::core::result::Result::Ok(#args_var) => #args_var,
                        ::core::result::Result::Err(#error_var) => return #krate::extract_error(#error_var),
                    };
                    #krate::respond(#call(#(#vars),*).await, &__limiter_req)
                },
            )
            .await
        }
    })
}

/// Whether the handler's signature or body names the `Self` of an enclosing impl: not a
/// `Self` inside an item nested in the body (a local type's impl, a nested function), which
/// is that item's own (a free function may hold one). Macro calls are searched token by token.
fn mentions_self(sig: &syn::Signature, block: &syn::Block) -> bool {
    use syn::visit::Visit;
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_ident(&mut self, ident: &'ast Ident) {
            self.0 |= ident == "Self";
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            self.visit_path(&mac.path);
            self.0 |= tokens_mention_self(mac.tokens.clone());
        }
    }
    let mut finder = Finder(false);
    finder.visit_signature(sig);
    finder.visit_block(block);
    finder.0
}

/// Whether `tokens` name `Self` anywhere.
fn tokens_mention_self(tokens: TokenStream2) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => ident == "Self",
        proc_macro2::TokenTree::Group(group) => tokens_mention_self(group.stream()),
        _ => false,
    })
}
