"""Sentences for the TTS generators, written for this project (no download).

Hand-written English sentences of many lengths and topics, plus sentences built
from templates with numbers, names, dates, times, prices and phone numbers (what
fraud calls are made of), and shorter lists in Spanish, French, Italian, German
and Japanese for the multilingual engines. `sentences(language)` is deterministic.
"""

from __future__ import annotations

import itertools

_EN = """\
Hello, this is a courtesy call about your recent order.
Please hold while I transfer you to the billing department.
The meeting has been moved to Thursday afternoon.
Can you hear me clearly, or should I call you back?
I left my keys on the kitchen table this morning.
Our flight was delayed by almost three hours because of fog.
The library closes early on public holidays.
She finished the marathon in just under four hours.
Remember to water the tomatoes before the weekend.
He says the invoice was paid last Friday, but the bank has no record of it.
The river rose quickly after the storm and flooded the lower fields.
We need your account number to verify your identity.
Don't share your password with anyone, not even with us.
Thank you for calling. Your call is important to us.
The children built a snowman with a carrot nose.
My grandmother grew up in a small village near the coast.
I think the printer on the second floor is out of paper again.
Could you spell your last name for me, please?
The train to Manchester departs from platform nine.
Turn left at the second set of traffic lights, then keep going straight.
The soup needs a little more salt and a squeeze of lemon.
It was the coldest winter anyone could remember.
Your package will arrive between noon and four o'clock.
The doctor asked him to come back in two weeks for a check-up.
We are experiencing unusually high call volumes.
The museum has a new exhibition about ancient Egypt.
I'm sorry, I didn't catch that. Could you say it again?
The engineers replaced the bridge's old steel cables last year.
Please confirm the transfer by pressing one.
The cat slept on the windowsill all afternoon.
Nobody expected the small team to win the championship.
The soup kitchen serves hot meals every evening at six.
If the light turns red, stop the machine immediately.
A quiet voice on the radio read the late news.
The company reported higher profits for the third quarter.
My brother is learning to play the violin.
Fresh bread is delivered to the shop before dawn.
The password reset link expires after thirty minutes.
Why don't we take the scenic route along the lake?
The concert was cancelled because the singer had a cold.
Mister Patel, your appointment is confirmed for Monday.
Hi Mom, it's me. I lost my phone and I'm calling from a friend's number.
I need you to send the money today, it's really urgent.
Don't tell anyone about this call until I explain everything.
Grandpa, I'm in trouble and I need your help right now.
The weather forecast promises sunshine for the rest of the week.
The old clock in the hallway stopped at a quarter past eight.
Several passengers complained about the noise in the carriage.
She whispered the answer so the others would not hear.
The garden was full of bees and the smell of lavender.
You have one new voicemail message.
To repeat this menu, press the star key.
Please state the reason for your call after the tone.
I'll be there in ten minutes, just stuck in traffic.
The results of the survey surprised everyone in the room.
He painted the fence bright blue, much to the neighbours' dismay.
Electric cars are becoming more common in the city centre.
The waiter recommended the grilled fish with seasonal vegetables.
Let's review the contract line by line before we sign it.
The wind carried the sound of church bells across the valley.
Our security team has detected unusual activity on your card.
For your protection, this call may be recorded.
The students handed in their essays on Monday morning.
I would like to book a table for four people, please.
The mountain road is closed until the snow is cleared.
That's the best apple pie I've ever tasted.
Could you forward me the slides from yesterday's presentation?
The baby finally fell asleep after midnight.
The lighthouse keeper lived alone on the island for twenty years.
Please have your policy number ready before you call.
He jogs along the canal every morning before work.
The bakery on the corner sells the best croissants in town.
It's going to rain, so don't forget your umbrella.
I'm calling from the tax office regarding an outstanding payment.
This is your final notice before legal action is taken.
The quarterly report is due at the end of the month.
A strange noise came from the engine as we climbed the hill.
Our neighbours are moving to Canada next spring.
The hotel room had a view of the harbour.
The professor paused, smiled, and continued the lecture.
Please leave the building by the nearest emergency exit.
I've attached the signed form to this message.
The farmers are worried about the long dry summer.
He forgot his lines in the middle of the second act.
Switch off the lights when you leave the office.
Our customer service team is available around the clock.
The puppy chewed through the charging cable.
There is a small café at the end of the pier.
The committee will announce its decision next Tuesday.
Press two to speak to an advisor.
It took them three days to hike across the national park.
The new software update fixes several security problems.
She keeps a diary in which she writes every night.
The market is busiest on Saturday mornings.
A good night's sleep makes a remarkable difference.
We apologise for the inconvenience and thank you for your patience.
The orchestra tuned their instruments before the performance.
I can't find the receipt, but I paid with my credit card.
Would you like a window seat or an aisle seat?
The fire alarm went off during the chemistry lesson.
His accent made it hard to tell where he was from.
The team celebrated late into the night.
They painted the nursery a soft shade of yellow.
The coach told the players to keep their heads up.
Turn the volume down a little, please.
There are seven days in a week and twelve months in a year.
Our records show that your subscription is about to expire.
We walked along the beach collecting shells.
The festival attracts visitors from all over the world.
I'm afraid the manager is not available at the moment.
The scientist explained her findings in simple words.
Every morning he buys a newspaper and a cup of coffee.
The bus was so crowded that we had to stand.
Please verify the last four digits of your social security number.
The dog barked at the postman as usual.
Heavy traffic is expected on the motorway this evening.
Let me check that for you; it will only take a moment.
The recipe calls for two eggs and a cup of flour.
Honestly, I have no idea what happened to the money.
Our offices will be closed on the twenty-fifth of December.
After the lecture, the students gathered in the courtyard.
The key to good pronunciation is careful listening.
He repaired the bicycle with an old spanner and a lot of patience.
A thunderstorm knocked out power across half the town.
The lawyer advised her client to remain silent.
The ship sailed at dawn, carrying grain and timber.
Please don't hang up; an agent will be with you shortly.
I'd like to cancel my subscription, effective immediately.
The new stadium can hold more than sixty thousand fans.
The painting was sold at auction for a record price.
If you have questions, reply to this message or call our hotline.
The village square was decorated with lanterns for the festival.
We're running a little late, so start without us.
The volunteers cleaned up the park on Sunday.
He told a long story about his adventures at sea.
Could you please repeat the confirmation code?
The phone rang twice and then went silent.
She studied medicine in Edinburgh before moving to London.
The children laughed at the clown's oversized shoes.
The store opens at nine and closes at half past five.
Your identity has been confirmed. How can I help you today?
The hikers reached the summit just before sunset.
Please ensure that all electronic devices are switched off.
There's a spare blanket in the cupboard if you get cold.
Nothing about this situation is normal.
The pilot announced that we would be landing shortly.
A short walk after dinner helps me sleep.
Our engineers are working to restore the service as quickly as possible.
The interview went well, and they offered me the job.
He keeps forgetting where he parked the car.
The exam results will be published online next week.
She has a brilliant idea for a new mobile app.
Sorry to bother you so late, but it's an emergency.
The soup was too hot to eat right away.
They rescued a kitten from the top of the oak tree.
Please speak after the beep and press the hash key when finished.
"""

_FIRST_NAMES = ("Alice", "Omar", "Mei", "Carlos", "Priya", "John", "Fatima", "Lukas", "Sofia", "Kwame",
                "Hannah", "Diego", "Yuki", "Ivan", "Grace", "Mohammed", "Emma", "Ravi", "Chloe", "Tomasz")
_LAST_NAMES = ("Johnson", "Nguyen", "Garcia", "Okafor", "Schmidt", "Rossi", "Kowalski", "Tanaka",
               "Hernandez", "O'Brien", "Dubois", "Singh", "Andersson", "Murphy", "Silva", "Kim")
_CITIES = ("Boston", "Leeds", "Toronto", "Sydney", "Dublin", "Denver", "Glasgow", "Auckland", "Chicago",
           "Bristol", "Seattle", "Cardiff")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_TEMPLATES = (
    "Hello {first}, this is {first2} from the bank in {city}.",
    "Your reference number is {n4}, I repeat, {n4}.",
    "The transfer of {amount} dollars will be processed on {weekday}.",
    "Please call us back on {phone} before {hour} o'clock.",
    "{first} {last} was born on the {day} of {month}, {year}.",
    "Flight {n3} to {city} is now boarding at gate {gate}.",
    "Your verification code is {d1} {d2} {d3} {d4} {d5} {d6}.",
    "We charged {amount} pounds and {cents} pence to your card ending in {n4}.",
    "Meet me at {hour}:{minute} outside the station in {city}.",
    "{first}, can you ask {first2} to send the report by {weekday}?",
    "The total comes to {amount} euros, including tax.",
    "Room {n3} is on the {floor} floor, next to the lifts.",
    "In {year}, the population of {city} was about {big} people.",
    "Mrs {last} called at {hour} fifteen about the delivery to {n3} Station Road.",
    "Your balance is {amount} dollars and {cents} cents.",
    "Order number {n4}{n3} was shipped on the {day} of {month}.",
    "Dear {first}, your appointment with Doctor {last} is on {weekday} at {hour}.",
    "Agent {n3} speaking, am I talking to {first} {last}?",
    "It was {temp} degrees in {city} on {weekday} afternoon.",
    "Please transfer {big} to account {n4} {n4b} immediately.",
)
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
             "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "twentieth", "twenty-first",
             "twenty-second", "twenty-eighth", "thirtieth")

_ES = """\
Buenos días, le llamamos de su banco por un problema con su tarjeta.
El tren de las ocho y media sale del andén número tres.
Mi hermana vive en Sevilla desde hace diez años.
Por favor, confirme su número de cliente después de la señal.
Hace mucho calor hoy, vamos a la playa esta tarde.
La reunión se ha cambiado al jueves por la mañana.
No encuentro las llaves del coche por ninguna parte.
El restaurante abre a la una y cierra a medianoche.
Necesito que me envíes el dinero hoy mismo, es urgente.
Gracias por su paciencia, un agente le atenderá en breve.
Los niños juegan en el parque después del colegio.
El médico me dijo que descansara durante una semana.
Su pedido llegará entre el lunes y el miércoles.
La biblioteca está cerrada los domingos.
Ayer llovió tanto que se inundaron las calles.
¿Podría repetir su nombre completo, por favor?
El precio total es de cuarenta y cinco euros con veinte.
Nos vemos en la plaza mayor a las siete.
Mi abuela prepara la mejor paella del pueblo.
El vuelo a Buenos Aires tiene un retraso de dos horas.
"""
_FR = """\
Bonjour, je vous appelle au sujet de votre commande récente.
Le train pour Lyon partira avec vingt minutes de retard.
Veuillez patienter, un conseiller va prendre votre appel.
Nous avons remarqué une activité inhabituelle sur votre compte.
Il fait beau aujourd'hui, allons nous promener au bord de la rivière.
Ma sœur travaille dans un hôpital à Marseille.
La réunion est reportée à jeudi après-midi.
Pouvez-vous épeler votre nom de famille, s'il vous plaît ?
Le musée est fermé le mardi.
J'ai oublié mon parapluie dans le métro.
Votre code de confirmation est le quatre, sept, deux, neuf.
Les enfants jouent dans la cour de l'école.
Le boulanger ouvre sa boutique à six heures du matin.
Je suis désolé, je n'ai pas bien entendu.
Le montant total s'élève à trente-deux euros.
Nous partirons en vacances au mois d'août.
Merci de rappeler ce numéro avant dix-huit heures.
Il a neigé toute la nuit sur les montagnes.
Mon grand-père racontait des histoires de marins.
Appuyez sur la touche étoile pour revenir au menu principal.
"""
_IT = """\
Buongiorno, la chiamo dalla sua banca per un controllo di sicurezza.
Il treno per Milano parte dal binario quattro.
Mia madre cucina la pasta ogni domenica.
La riunione è stata spostata a venerdì mattina.
Per favore, resti in linea, un operatore le risponderà a breve.
Oggi piove e fa piuttosto freddo.
Il museo chiude alle sette di sera.
Potrebbe ripetere il suo codice cliente, per favore?
Abbiamo prenotato un tavolo per quattro persone.
Il pacco arriverà entro martedì prossimo.
I bambini giocano a calcio nel cortile.
Il conto totale è di ventotto euro e cinquanta.
Ho dimenticato il telefono in ufficio.
La città era piena di turisti durante l'estate.
Il medico mi ha consigliato di riposare.
Ci vediamo in piazza alle otto e mezza.
"""
_DE = """\
Guten Tag, hier spricht der Kundenservice Ihrer Bank.
Der Zug nach Berlin hat leider zwanzig Minuten Verspätung.
Bitte bleiben Sie in der Leitung, der nächste freie Mitarbeiter ist gleich für Sie da.
Meine Schwester wohnt seit fünf Jahren in Hamburg.
Das Treffen wurde auf Donnerstag verschoben.
Können Sie Ihren Nachnamen bitte buchstabieren?
Heute ist es sonnig und ziemlich warm.
Die Bibliothek ist am Sonntag geschlossen.
Ihr Paket wird zwischen Montag und Mittwoch geliefert.
Der Gesamtbetrag beträgt neunundvierzig Euro.
Ich habe meinen Schlüssel im Büro vergessen.
Die Kinder spielen nach der Schule im Park.
Wir sehen uns um sieben Uhr am Bahnhof.
Ihr Bestätigungscode lautet drei, acht, eins, fünf.
"""
_JA = """\
こんにちは。お電話ありがとうございます。
ただいま電話が大変混み合っております。
明日の会議は午後三時に変更になりました。
お客様の口座で不審な取引が確認されました。
駅の前で七時に待ち合わせましょう。
今日は朝から雨が降っています。
申し訳ありませんが、もう一度お名前をお願いします。
荷物は水曜日までに届く予定です。
祖母は毎朝公園を散歩しています。
お支払いの合計は三千五百円です。
このお電話は品質向上のため録音させていただいております。
新しい駅ビルには本屋と喫茶店があります。
確認コードは四、八、二、六です。
週末は家族で温泉に行きました。
"""


def _lines(block: str) -> list[str]:
    return [line.strip() for line in block.splitlines() if line.strip()]


def _templated_english(count: int) -> list[str]:
    """Deterministic fill-ins: a fixed walk over the value lists, no randomness."""
    out: list[str] = []
    for i in itertools.count():
        if len(out) >= count:
            break
        template = _TEMPLATES[i % len(_TEMPLATES)]
        k = i * 7919  # a prime stride spreads the combinations
        out.append(template.format(
            first=_FIRST_NAMES[k % len(_FIRST_NAMES)],
            first2=_FIRST_NAMES[(k // 3 + 5) % len(_FIRST_NAMES)],
            last=_LAST_NAMES[(k // 7) % len(_LAST_NAMES)],
            city=_CITIES[(k // 11) % len(_CITIES)],
            month=_MONTHS[(k // 13) % 12],
            weekday=_WEEKDAYS[(k // 17) % 7],
            day=_ORDINALS[(k // 5) % len(_ORDINALS)],
            floor=_ORDINALS[(k // 19) % 10],
            year=1931 + (k % 94),
            n3=100 + k % 900,
            n4=1000 + (k * 31) % 9000,
            n4b=1000 + (k * 53) % 9000,
            gate=f"{'ABCDEF'[k % 6]}{1 + k % 40}",
            amount=5 + (k * 13) % 4995,
            cents=(k * 3) % 100,
            big=f"{10_000 + (k * 977) % 990_000:,}",
            hour=1 + k % 12,
            minute=f"{(k * 5) % 60:02d}",
            temp=-5 + k % 40,
            phone=f"0{(k * 37) % 1000:03d} {(k * 41) % 1000:03d} {(k * 43) % 10000:04d}",
            d1=k % 10, d2=(k // 10) % 10, d3=(k * 3) % 10, d4=(k * 7) % 10, d5=(k // 3) % 10, d6=(k * 9) % 10,
        ))
    return out


_BY_LANGUAGE: dict[str, list[str]] = {
    "en": _lines(_EN) + _templated_english(240),
    "es": _lines(_ES),
    "fr": _lines(_FR),
    "it": _lines(_IT),
    "de": _lines(_DE),
    "ja": _lines(_JA),
}


def languages() -> list[str]:
    return sorted(_BY_LANGUAGE)


def sentences(language: str) -> list[str]:
    if language not in _BY_LANGUAGE:
        raise ValueError(f"no sentences for language {language!r}; have {languages()}")
    return list(_BY_LANGUAGE[language])
